"""What the native provider knows of one sandbox: its worker, channel, cgroup and areas.

It lives in the handle's private ``_state`` and is read and written by providers.native alone;
the rest of warden asks the provider (``usable``, ``call``). Each field says who may touch it.
``lock`` is the sandbox's own: a request holds it from send to reply, and teardown takes it, so
no two of them ever use the channel or the worker at once.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from warden.errors import InvalidArgument

if TYPE_CHECKING:
    from warden.host.cgroups import SandboxCgroup
    from warden.host.identity import HostId
    from warden.host.net.egress import Attachment
    from warden.host.net.tls import CertAuthority
    from warden.providers.base import SandboxHandle, SandboxSpec
    from warden.wire.channel import Channel

__all__ = ["NativeState", "spec_key", "state_of"]


@dataclass(slots=True, eq=False)
class NativeState:
    # The sandbox's init (warden-init, its pid 1; the worker is its one child), as the host's
    # pid namespace numbers it. Set by _spawn, never changed; read to reach the root.
    pid: int
    # A pidfd of the init. Set by _spawn; polled by anyone who asks whether the sandbox has
    # ended; signalled by the kill; closed by teardown under ``lock`` (after it, only
    # ``destroyed`` may be read).
    pidfd: int
    # The read end of the init's status pipe: the worker's exact wait status arrives here when
    # it ends (_core.final_status). Set by _spawn; read by the death report; closed by
    # teardown.
    status_fd: int
    # The sandbox's mount namespace, kept open so that its mounts go away in the background.
    # Set by _spawn; handed to the preparer by teardown.
    mount_ns: tuple[int, ...]
    # The host's end of the worker's socket. Used by call under ``lock``; closed by teardown.
    chan: Channel
    # The sandbox's cgroup. Its counters are read by call, exec and the death report; it is
    # handed to the preparer for removal by teardown.
    cgroup: SandboxCgroup
    # The sandbox's own host uid/gid. Set by _spawn; handed back with the cgroup by teardown,
    # once nothing of the sandbox can still be charged to it.
    host_id: HostId
    # A read-only workspace's host directory, written by the file methods from outside; None
    # for a workspace inside the sandbox. Set by _spawn; removed by teardown.
    host_ws: str | None
    # Where a {"$file"} reply is read from: the spec's data area beneath the worker's root, as
    # the host sees it (/proc/<pid>/root/...); None for a spec without one. Set by _spawn.
    large_dir: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Why the sandbox can serve no more requests (None while it can). Written under ``lock``
    # by call (a deadline), the death report and teardown; read by usable() and create's reuse.
    dead: str | None = None
    # Set once, under ``lock``, by teardown; afterwards nothing but ``dead`` is used.
    destroyed: bool = False
    # The cgroup's OOM kill count when exec last read it, so that the death report blames
    # memory only for an OOM kill since then. Written and read under ``lock``.
    oom_seen: int = 0
    # The preparer's key for this sandbox's spec, so that destroy has the next one made ahead;
    # set by create when it hands the sandbox out (None while it waits in the preparer).
    prep_key: Hashable | None = None
    # The sandbox's network namespace, kept open for its proxy and exposed ports. Set by
    # _spawn; closed by teardown (providers.native.network.detach).
    netns: int = -1
    # warden's side of the sandbox's network (its proxy, log, exposed ports); None until a
    # policy or an exposed port needs it. Set under ``lock``; ended by teardown.
    net: Attachment | None = None
    # The sandbox's own CA, for a policy that injects headers into HTTPS requests, and the
    # host file of its trust store (bound read-only inside). Set by _spawn; the file is
    # removed by teardown (providers.native.network.detach).
    ca: CertAuthority | None = None
    ca_bundle: str | None = None
    # Whether the sandbox's cgroup is frozen (providers.native.pause), and whether destroy has
    # begun (no pause after it). Written under ``pause_lock``, never ``lock``: a request in
    # flight holds ``lock`` while its process is frozen. Read by the request's live check.
    paused: bool = False
    closing: bool = False
    pause_lock: threading.Lock = field(default_factory=threading.Lock)


def state_of(handle: SandboxHandle) -> NativeState:
    """The native provider's record of ``handle``; a handle of another provider is refused."""
    st = handle._state
    if type(st) is not NativeState:
        raise InvalidArgument("handle", handle.id,
                              f"a sandbox of the native provider, not of {handle.provider!r}; "
                              "pass each handle to the provider that made it")
    return st


def spec_key(spec: SandboxSpec) -> tuple:
    """Everything that makes two sandboxes different, hashable: sandboxes made ahead are
    handed out only to a spec equal in every field."""
    return (spec.limits, spec.network, spec.readonly, tuple(sorted(spec.labels.items())),
            spec.code_dir, spec.mount_at, tuple(spec.writable), spec.cwd,
            tuple(sorted(spec.env.items())), spec.image, spec.entry_point, spec.data_dir)
