"""What the Docker provider knows of one sandbox: its current container and the link to it.

It lives in the handle's private ``_state`` and is read and written by providers.docker alone;
the rest of warden asks the provider (``usable``, ``call``). Each field says who may touch it.
``lock`` is the sandbox's own (re-entrant: a request that finds the container dead replaces it
while holding it): a request holds it from send to reply, and destroy, reconcile and the idle
reaper take it before they change the container or the link.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from warden.errors import InvalidArgument

if TYPE_CHECKING:
    from warden.host.net.egress import Attachment
    from warden.providers.base import SandboxHandle
    from warden.providers.docker.link import Link

__all__ = ["DockerState", "state_of"]


@dataclass(slots=True, eq=False)
class DockerState:
    # The container serving the sandbox now; a dead one is replaced by a fresh container under
    # the same sandbox id. Set by start (under ``lock``); cleared by reconcile when the engine
    # lost it; read by everything that talks to the engine about this sandbox.
    container: str | None = None
    # Frames to and from the worker over the container's attached stdio; None once the
    # container is dead (the next request starts a fresh one). Set by start, closed and cleared
    # by kill, destroy and reconcile, all under ``lock``; used by the request under ``lock``.
    link: Link | None = None
    # Why the current container can serve no more requests (None while it can). Written under
    # ``lock`` by kill, destroy and reconcile, cleared by start; read by usable().
    dead: str | None = None
    # Set once, under ``lock``, by destroy; afterwards a request is refused.
    destroyed: bool = False
    # Request ids on the link, restarted with every container. Used by the request.
    next_id: itertools.count = field(default_factory=lambda: itertools.count(1))
    # Requests in progress (under ``lock``) and when the last one ended: the idle reaper
    # removes a reusable sandbox only when both say it is unused. Written by call; read by
    # the reaper under ``lock``; create's reuse refreshes ``last_used``.
    busy: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # A sandbox of another warden process, found on the engine by list(): shown, never called
    # into or removed by this one. ``owner`` is that process's owner id (warden.host.owner).
    # Set when list() makes the handle; never changed.
    foreign: bool = False
    owner: str | None = None
    # warden's side of the current container's network (its proxy and log) for a sandbox
    # with a NetworkPolicy; None otherwise. Set by start, ended by start (for the next
    # container) and destroy, under ``lock`` (providers.docker.network).
    net: Attachment | None = None
    # Whether the current container is paused (docker pause), written by pause and resume
    # under ``pause_lock``, never ``lock`` (a request in flight holds it while the container
    # is frozen); read by the request, which refuses to start while it is set.
    paused: bool = False
    pause_lock: threading.Lock = field(default_factory=threading.Lock)


def state_of(handle: SandboxHandle) -> DockerState:
    """The Docker provider's record of ``handle``; a handle of another provider is refused."""
    st = handle._state
    if type(st) is not DockerState:
        raise InvalidArgument("handle", handle.id,
                              f"a sandbox of the Docker provider, not of {handle.provider!r}; "
                              "pass each handle to the provider that made it")
    return st
