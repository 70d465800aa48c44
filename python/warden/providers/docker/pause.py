"""Pausing a Docker sandbox: ``docker pause`` / ``docker unpause`` of its current container
(the engine's cgroup freezer). While paused, a request is refused with SandboxPaused before
anything is sent; removing a paused container kills it without thawing it first (the engine
sends SIGKILL, then resumes it). ``reclaim`` is refused: the engine has no call that gives a
container's memory back."""

from __future__ import annotations

from typing import Any

from warden.errors import ProviderUnavailable, WorkerCrashed
from warden.providers.base import SandboxHandle
from warden.providers.docker.state import state_of

try:
    import docker.errors
except ImportError as _exc:  # pragma: no cover - the provider's own import says how to fix it
    raise ImportError("the Docker provider needs the Docker SDK: pip install 'warden[docker]'",
                      name="docker") from _exc

__all__ = ["PauseMixin"]


class PauseMixin:
    """``pause``, ``resume`` and ``paused`` of DockerProvider."""

    api: Any

    def pause(self, handle: SandboxHandle, *, reclaim: bool = False) -> int:
        st = state_of(handle)
        if reclaim:
            raise ProviderUnavailable(
                "pause(reclaim=True) on provider 'docker'",
                "the engine cannot give a container's memory back; pause without reclaim, "
                "or use provider='native'")
        with st.pause_lock:
            cid = st.container
            if st.foreign or st.destroyed or st.dead or cid is None:
                raise WorkerCrashed(f"sandbox {handle.id} has no running container to pause "
                                    f"({st.dead or 'destroyed' if st.destroyed else 'foreign'})")
            if not st.paused:
                try:
                    self.api.pause(cid)
                except docker.errors.APIError as exc:
                    raise ProviderUnavailable(f"a pause of container {cid[:12]}",
                                              str(exc)) from exc
                st.paused = True
        return 0

    def resume(self, handle: SandboxHandle) -> None:
        st = state_of(handle)
        with st.pause_lock:
            if not st.paused:
                return
            cid = st.container
            if cid is not None and not st.dead and not st.destroyed:
                try:
                    self.api.unpause(cid)
                except docker.errors.NotFound:
                    pass  # the container is gone: the next request starts a fresh one
                except docker.errors.APIError as exc:
                    raise ProviderUnavailable(f"a resume of container {cid[:12]}",
                                              str(exc)) from exc
            st.paused = False

    def paused(self, handle: SandboxHandle) -> bool:
        return state_of(handle).paused
