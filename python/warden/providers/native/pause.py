"""Pausing a native sandbox: its cgroup frozen (v1 freezer.state, v2 cgroup.freeze).

Every process of the sandbox, its init and worker included, is in the cgroup from its birth
(the v1 freezer hierarchy is made for every long-lived sandbox), so a freeze stops all of
them and none can fork its way out meanwhile. Only warden writes the freezer file: the code
inside cannot reach it, and its host uid could not write it if it did.

While paused, a request that needs the code inside is refused with SandboxPaused before
anything is sent, rather than waiting on a frozen worker. A request already in flight when
pause() is called stalls with its process, and its deadline keeps running: past it the
sandbox is killed, as for any timeout. destroy() of a paused sandbox kills everything while it
is still frozen (nothing runs again), then removes it.
"""

from __future__ import annotations

from warden.errors import WorkerCrashed
from warden.providers.base import SandboxHandle
from warden.providers.native.state import state_of

__all__ = ["PauseMixin"]


class PauseMixin:
    """``pause``, ``resume`` and ``paused`` of NativeProvider."""

    def pause(self, handle: SandboxHandle, *, reclaim: bool = False) -> int:
        st = state_of(handle)
        with st.pause_lock:
            if st.closing or st.dead:
                raise WorkerCrashed(f"sandbox {handle.id} is gone ({st.dead or 'closed'}); "
                                    "there is nothing to pause")
            if not st.paused:
                st.cgroup.freeze()
                st.paused = True
            return st.cgroup.reclaim() if reclaim else 0

    def resume(self, handle: SandboxHandle) -> None:
        st = state_of(handle)
        with st.pause_lock:
            if st.closing or st.dead:
                raise WorkerCrashed(f"sandbox {handle.id} is gone ({st.dead or 'closed'}); "
                                    "there is nothing to resume")
            if st.paused:
                st.cgroup.thaw()
                st.paused = False

    def paused(self, handle: SandboxHandle) -> bool:
        return state_of(handle).paused

    def _end_pause(self, handle: SandboxHandle) -> None:
        """At destroy: no pause from now on; a paused sandbox's processes are killed while
        still frozen (a thawed one would run again, if only briefly), which also ends a
        request stalled on them, so that teardown does not wait for its deadline."""
        st = state_of(handle)
        with st.pause_lock:
            st.closing = True
            if st.paused and not st.destroyed:
                st.cgroup.kill()  # v1: SIGKILL each while frozen, then thaw; v2: cgroup.kill
                st.paused = False
