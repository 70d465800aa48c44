"""What the engine holds of warden's: containers of this and other warden processes, whose
owner still lives, why each that ended did end, and the background thread that keeps the
engine tidy (idle sandboxes removed, orphans reconciled).

Every container carries its owner's id (warden.host.owner) in the ``warden.owner`` label, so
that any warden process can tell a container of a dead process (an orphan, removed) from one of
a live process (left alone) or of another machine sharing the engine (not its to judge).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import docker.errors

from warden.errors import ProviderUnavailable
from warden.host.owner import owner_alive
from warden.providers.base import (
    LABEL_KEYS,
    ReconcileReport,
    SandboxHandle,
    SandboxSpec,
)
from warden.providers.docker.link import attach
from warden.providers.docker.state import DockerState, state_of

if TYPE_CHECKING:
    from warden.providers.docker.link import Link
    from warden.providers.docker.provider import DockerProvider

__all__ = ["CLAIMED", "Housekeeper", "Reconciling", "adopted_handle", "classify", "containers",
           "fate", "foreign_handle", "oom_events"]

log = logging.getLogger(__name__)


def containers(api, labels: Mapping[str, str] | None = None, *, all_states: bool = True
               ) -> list[dict]:
    """warden's containers on the engine (docker.APIClient ``api``) whose labels include
    ``labels``; the stopped ones too unless ``all_states`` is False."""
    filters = ["warden.provider=docker", *(f"{k}={v}" for k, v in (labels or {}).items())]
    return api.containers(all=all_states, filters={"label": filters})


def oom_events(api, since: int, until: int) -> set[str]:
    """Containers of warden's that the engine reported OOM events for between two times."""
    found: set[str] = set()
    try:
        stream = api.events(since=since, until=until, decode=True,
                            filters={"type": "container", "event": "oom",
                                     "label": "warden.provider=docker"})
        for ev in stream:
            found.add(ev.get("id") or ev.get("Actor", {}).get("ID", ""))
    except docker.errors.APIError as exc:
        raise ProviderUnavailable("the Docker engine's event stream", str(exc)) from exc
    return found


def classify(api, cid: str, oom_seen: set[str], *, deadline: bool) -> str:
    """Why container ``cid`` ended: "deadline" (``deadline``: warden killed it for passing
    one), "oom", "exited" (status 0), "crashed", or "missing" (the engine has no such
    container)."""
    if deadline:
        return "deadline"
    try:
        state = api.inspect_container(cid)["State"]
    except docker.errors.NotFound:
        return "missing"
    if state.get("OOMKilled") or cid in oom_seen:
        return "oom"
    if state.get("ExitCode") == 0 and not state.get("Error"):
        return "exited"
    return "crashed"


def fate(owner: str, me: str, *, running: bool, claimed: bool, known: bool) -> str:
    """What reconcile does with a container that no sandbox of this provider object serves:
    "keep" it, "adopt" it, or "remove" it. ``owner`` is its label, ``me`` this process's owner
    id, ``claimed`` whether another provider object of this process serves it, ``known``
    whether this provider object has a sandbox of its id."""
    alive = owner_alive(owner)
    if alive is None:
        return "keep"  # another machine's container: not ours to judge
    if alive and owner != me:
        return "keep"  # a live warden process's sandbox
    if owner == me and claimed:
        return "keep"  # served by another provider object of this process
    if owner == me and running and not known:
        # Ours but unknown to this provider object (made by an earlier instance in this
        # process): adopted under its labels so that list() shows it.
        return "adopt"
    return "remove"


def foreign_handle(c: dict, provider: str) -> SandboxHandle:
    """A handle that shows container ``c`` (an entry of :func:`containers`) of another warden
    process: listed, never called into."""
    lab = c.get("Labels") or {}
    return SandboxHandle(
        id=lab.get("warden.id", c["Id"][:12]), provider=provider, spec=SandboxSpec(),
        labels={k: v for k, v in lab.items() if k in LABEL_KEYS},
        reuse_key=lab.get("warden.reuse_key"),
        _state=DockerState(container=c["Id"], owner=lab.get("warden.owner"), foreign=True))


def adopted_handle(c: dict, link: Link, provider: str) -> SandboxHandle:
    """A handle that serves container ``c`` of this process, made by an earlier provider
    object, over ``link``."""
    lab = c.get("Labels") or {}
    spec = SandboxSpec(labels={k: v for k, v in lab.items() if k in LABEL_KEYS})
    # Request ids far from the earlier object's, whose late replies may still be in the pipe.
    return SandboxHandle(id=lab["warden.id"], provider=provider, spec=spec,
                         labels=dict(spec.labels), reuse_key=lab.get("warden.reuse_key"),
                         _state=DockerState(container=c["Id"], link=link,
                                            next_id=itertools.count(1 << 20)))


# Containers that some DockerProvider of this process is serving: reconcile by another instance
# in the same process must not adopt them (two hosts writing frames into one stdin).
CLAIMED: set[str] = set()


class Reconciling:
    """The Docker provider's view of the engine: its sandboxes and other processes', their
    reconciliation and the removal of idle ones. Mixed into DockerProvider, whose attributes
    below it uses, and whose ``destroy`` and ``_remove`` (a container's removal) it calls."""

    api: Any                             # docker.APIClient
    name: str
    owner: str                           # this process's owner id (warden.host.owner)
    max_frame: int
    idle_seconds: float
    _lock: threading.Lock                # guards _live
    _live: dict[str, SandboxHandle]      # this provider object's sandboxes, by id
    _deadlines: set[str]                 # containers killed for passing a deadline
    _events_since: int                   # where the engine's OOM events were read up to

    if TYPE_CHECKING:
        def destroy(self, handle: SandboxHandle) -> None: ...
        def _remove(self, cid: str) -> None: ...

    def reap_idle(self, now: float | None = None) -> list[str]:
        """Remove reusable sandboxes idle for ``idle_seconds``; return their ids. Each is
        re-checked under its own lock, so one picked up by a caller meanwhile survives."""
        if self.idle_seconds <= 0:
            return []
        removed = []
        with self._lock:
            candidates = [h for h in self._live.values() if h.reuse_key is not None]
        for h in candidates:
            st = state_of(h)
            if not st.lock.acquire(blocking=False):
                continue  # in use right now
            try:
                t = now if now is not None else time.monotonic()
                if st.busy or st.destroyed or t - st.last_used < self.idle_seconds:
                    continue
            finally:
                st.lock.release()
            self.destroy(h)
            removed.append(h.id)
        return removed

    # -- sandboxes on the engine ---------------------------------------------------------------

    def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]:
        """This process's live sandboxes whose labels include ``labels``, plus those of other
        processes (found on the engine; they are not ours to call into)."""
        want = dict(labels or {})
        with self._lock:
            mine = [h for h in self._live.values()
                    if all(h.labels.get(k) == v for k, v in want.items())]
        known = {state_of(h).container for h in mine}
        others = [foreign_handle(c, self.name)
                  for c in containers(self.api, want, all_states=False)
                  if c["Id"] not in known]
        return mine + others

    def reconcile(self) -> ReconcileReport:
        """Remove containers of dead warden processes (orphans), find this process's dead
        containers and mark their sandboxes for a fresh container, re-adopt this process's live
        ones, and classify every exit seen (engine events and container state): "oom",
        "deadline", "crashed", "exited", or "missing" (the container vanished, as after an
        engine restart that lost it)."""
        report = ReconcileReport()
        now = int(time.time())
        oom_seen = oom_events(self.api, self._events_since, now)
        self._events_since = now
        with self._lock:
            mine = {state_of(h).container: h for h in self._live.values()}
        known = {h.id for h in mine.values()}
        seen: set[str] = set()
        for c in containers(self.api):
            seen.add(c["Id"])
            self._reconcile_one(c, mine, known, oom_seen, report)
        for cid, handle in mine.items():
            if cid is not None and cid not in seen and not state_of(handle).destroyed:
                self._forget(handle, cid, "missing", gone=True)
                report.exits[handle.id] = "missing"
        return report

    def _reconcile_one(self, c: dict, mine: dict[str | None, SandboxHandle], known: set[str],
                       oom_seen: set[str], report: ReconcileReport) -> None:
        cid = c["Id"]
        lab = c.get("Labels") or {}
        wid = lab.get("warden.id", cid[:12])
        running = c.get("State") == "running"
        handle = mine.get(cid)
        if handle is not None:
            if running:
                report.recovered.append(wid)
                return
            report.exits[wid] = self._classify(cid, oom_seen)
            self._forget(handle, cid, report.exits[wid], gone=False)
        else:
            what = fate(lab.get("warden.owner", ""), self.owner, running=running,
                        claimed=cid in CLAIMED, known=wid in known)
            if what == "keep":
                return
            if what == "adopt":
                self._adopt(c)
                report.recovered.append(wid)
                return
            report.exits[wid] = "orphaned" if running else self._classify(cid, oom_seen)
        self._remove(cid)
        report.removed.append(wid)

    def _forget(self, handle: SandboxHandle, cid: str, why: str, *, gone: bool) -> None:
        """Mark the sandbox dead if ``cid`` still serves it, so that its next request starts
        a fresh container; ``gone``: the engine has lost ``cid``."""
        st = state_of(handle)
        with st.lock:
            if st.container == cid:
                if st.link is not None:
                    st.link.close()
                    st.link = None
                if gone:
                    st.container = None
                st.dead = why

    def _adopt(self, c: dict) -> None:
        link = attach(self.api, c["Id"], self.max_frame)
        h = adopted_handle(c, link, self.name)
        with self._lock:
            self._live[h.id] = h
        CLAIMED.add(c["Id"])

    def _classify(self, cid: str, oom_seen: set[str]) -> str:
        return classify(self.api, cid, oom_seen, deadline=cid in self._deadlines)


class Housekeeper:
    """The provider's background thread: it removes reusable sandboxes idle for the provider's
    ``idle_seconds`` and reconciles every ``reconcile_interval`` seconds (either 0: not done)."""

    def __init__(self, provider: DockerProvider) -> None:
        self._provider = provider
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        p = self._provider
        if self._thread is not None or (p.reconcile_interval <= 0 and p.idle_seconds <= 0):
            return
        self._thread = threading.Thread(target=self._run, name="warden-docker-reaper",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        p = self._provider
        period = min(x for x in (p.reconcile_interval, p.idle_seconds / 2, 30.0) if x > 0)
        last_reconcile = time.monotonic()
        while not self._stop.wait(period):
            p.reap_idle()
            if p.reconcile_interval > 0 and \
                    time.monotonic() - last_reconcile >= p.reconcile_interval:
                last_reconcile = time.monotonic()
                try:
                    p.reconcile()
                except (ProviderUnavailable, docker.errors.DockerException) as exc:
                    # The engine may be restarting; the next round tries again.
                    log.warning("background reconciliation failed: %s", exc)
