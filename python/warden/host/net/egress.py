"""The egress service: one event loop thread per warden process serving every sandbox's proxy
and exposed ports, and per sandbox an Attachment that holds its policy, budgets and log.

Each sandbox with a policy gets its own listening socket, made inside the sandbox's network
namespace at 127.0.0.1:PROXY_PORT by warden (netns.in_netns): it is the sandbox's only way
out, it is reachable from that namespace alone (so no sandbox can reach another's proxy or
another's connections), and the sandbox cannot reconfigure it (the namespace belongs to the
host's user namespace). No process runs inside the sandbox for it.

Fairness: every wait is bounded (proxy.py), every connection is non-blocking on the one loop,
and each sandbox has its own connection cap (``max_connections``, default
DEFAULT_MAX_CONNECTIONS), byte budget (``max_bytes``), listen backlog and resolver slots, so a
slow or hostile sandbox spends its own allowance, not another's.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from warden.host.net import netns, proxy, resolve, tls, transparent
from warden.spec.network import NetworkEvent, NetworkPolicy

__all__ = ["DEFAULT_MAX_CONNECTIONS", "LOG_MAX", "PROXY_PORT", "Attachment", "Egress",
           "Record", "egress", "proxy_env"]

PROXY_PORT = 3128
DEFAULT_MAX_CONNECTIONS = 64
LOG_MAX = 10000
BACKLOG = 64
RESOLVER_SLOTS = 2
RESOLVE_TIMEOUT_S = 10.0
NAMES_MAX = 4096          # addresses remembered per sandbox (transparent mode)
NAMES_PER_ADDRESS = 8
T = TypeVar("T")


def proxy_env() -> dict[str, str]:
    """The variables that point HTTP clients at the proxy (both spellings: curl reads only
    the lower-case http_proxy, others the upper-case ones)."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    env = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "ALL_PROXY": f"socks5h://127.0.0.1:{PROXY_PORT}",
           "NO_PROXY": "localhost,127.0.0.1,::1"}
    return {**env, **{k.lower(): v for k, v in env.items()}}


class Record:
    """One connection attempt as it happens; written on the loop thread only."""

    __slots__ = ("time", "host", "port", "via", "address", "allowed", "rule", "error",
                 "up", "down", "t0", "t1", "totals")

    def __init__(self, host: str, port: int, via: str, totals: list[int] | None = None) -> None:
        self.totals = totals if totals is not None else [0, 0]  # the sandbox's (up, down)
        self.time, self.t0 = time.time(), time.monotonic()
        self.t1: float | None = None
        self.host, self.port, self.via = host, port, via
        self.address: str | None = None
        self.allowed, self.rule, self.error = False, "", ""
        self.up = self.down = 0

    def deny(self, rule: str, address: str | None = None) -> None:
        self.allowed, self.rule, self.address = False, rule, address
        self.close()

    def allow(self, address: str, rule: str) -> None:
        self.allowed, self.rule, self.address = True, rule, address

    def fail(self, error: str) -> None:
        self.error = error
        self.close()

    def count(self, n: int, *, up: bool) -> None:
        if up:
            self.up += n
            self.totals[0] += n
        else:
            self.down += n
            self.totals[1] += n

    def close(self) -> None:
        if self.t1 is None:
            self.t1 = time.monotonic()

    def event(self) -> NetworkEvent:
        end = self.t1 if self.t1 is not None else time.monotonic()
        rule = self.rule + (f" ({self.error})" if self.error else "")
        return NetworkEvent(time=self.time, host=self.host, port=self.port,
                            address=self.address, allowed=self.allowed, rule=rule,
                            via=self.via, bytes_up=self.up, bytes_down=self.down,
                            duration_s=end - self.t0, open=self.t1 is None)


class Attachment:
    """warden's side of one sandbox's network: its proxy listener, policy, budgets, log and
    exposed ports. Made and ended by Egress; ``policy`` may be swapped from any thread."""

    def __init__(self, service: Egress, netns_fd: int) -> None:
        self.service = service
        # The sandbox's CA when it was made with a policy that injects headers (its
        # certificate is in the sandbox's trust store); None otherwise. Set by Egress.attach.
        self.ca: tls.CertAuthority | None = None
        self._upstream: tuple[str | None, ssl.SSLContext] | None = None
        self.netns_fd = os.dup(netns_fd)
        self.policy: NetworkPolicy | None = None
        self.dialer: netns.Dialer | None = None
        self._server: asyncio.base_events.Server | None = None
        self._log: collections.deque[Record] = collections.deque(maxlen=LOG_MAX)
        self._log_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.exposed: dict[int, tuple[asyncio.base_events.Server, str]] = {}
        self.open = 0
        self.spent = 0
        # Bytes relayed for the sandbox over its life: [up (to the world), down]. Written on
        # the loop thread (Record.count); read from any thread.
        self.totals = [0, 0]
        self.exhausted = False
        self.resolving = asyncio.Semaphore(RESOLVER_SLOTS)
        # Transparent mode: the sandbox's gateway, and the names warden's DNS gave out for
        # each address (most recent first). Loop side, but for the gateway's set-up.
        self.gateway: transparent.Gateway | None = None
        self._names: collections.OrderedDict[str, list[str]] = collections.OrderedDict()

    # -- loop side -----------------------------------------------------------------------------

    def dial(self) -> netns.Dialer:
        assert self.dialer is not None  # set with every policy (Egress.set_policy)
        return self.dialer

    async def resolve(self, name: str) -> list[str]:
        """The addresses of ``name``, looked up in the egress namespace; [] when it does not
        resolve within RESOLVE_TIMEOUT_S (the wait for a slot included). A lookup holds one
        of the sandbox's RESOLVER_SLOTS until its thread is done with it, also after the
        sandbox stopped waiting: a sandbox whose lookups hang holds its own slots, never a
        thread another sandbox needs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESOLVE_TIMEOUT_S
        try:
            await asyncio.wait_for(self.resolving.acquire(), RESOLVE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return []  # its own lookups hold every slot it has
        try:
            fut = self.dial().resolve(lambda: resolve.lookup(name))
        except BaseException:
            self.resolving.release()
            raise
        fut.add_done_callback(lambda _f: loop.call_soon_threadsafe(self.resolving.release))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)),
                                          max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            return []

    def record(self, host: str, port: int, via: str) -> Record:
        rec = Record(host, port, via, self.totals)
        with self._log_lock:
            self._log.append(rec)
        return rec

    def injected(self, host: str) -> Mapping[str, str] | None:
        """The headers set on requests to ``host`` (None: its tunnels are relayed blind)."""
        policy = self.policy
        if policy is None or not policy.inject:
            return None
        return policy.inject.get(host)

    def upstream_tls(self) -> ssl.SSLContext:
        """How the proxy verifies an injected host (the policy's upstream_ca, or the host's
        trust store), made once per CA file."""
        cafile = self.policy.upstream_ca if self.policy is not None else None
        if self._upstream is None or self._upstream[0] != cafile:
            self._upstream = (cafile, tls.upstream_context(cafile))
        return self._upstream[1]

    def remember(self, name: str, addresses: list[str]) -> None:
        """warden's DNS gave ``addresses`` out for ``name``."""
        for a in addresses:
            names = [name, *(n for n in self._names.pop(a, []) if n != name)]
            self._names[a] = names[:NAMES_PER_ADDRESS]
        while len(self._names) > NAMES_MAX:
            self._names.popitem(last=False)

    def names_for(self, address: str) -> list[str]:
        return self._names.get(address, [])

    def budget_refusal(self) -> str | None:
        policy = self.policy
        if self.exhausted and policy is not None and policy.max_bytes is not None:
            return f"max_bytes budget of {policy.max_bytes} spent"
        return None

    def charge(self, n: int) -> int:
        """How many of ``n`` bytes the budget lets pass (and charges)."""
        cap = self.policy.max_bytes if self.policy is not None else None
        allowed = n if cap is None else max(0, min(n, cap - self.spent))
        self.spent += allowed
        return allowed

    def exhaust(self) -> None:
        """The byte budget is spent: end every connection of this sandbox."""
        self.exhausted = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection to the sandbox's proxy."""
        await self._admit(proxy.serve, reader, writer)

    async def accept_redirected(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        """A connection of the sandbox's, redirected in its gateway (transparent mode)."""
        await self._admit(transparent.serve, reader, writer)

    async def _admit(self, serve: Callable[[Attachment, asyncio.StreamReader,
                                            asyncio.StreamWriter], Coroutine[Any, Any, None]],
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        policy = self.policy
        cap = DEFAULT_MAX_CONNECTIONS
        if policy is not None and policy.max_connections is not None:
            cap = policy.max_connections
        if self.open >= cap:
            self.record("", 0, "proxy").deny(f"max_connections limit of {cap} reached")
            writer.close()
            return
        self.open += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await serve(self, reader, writer)
        except asyncio.CancelledError:
            # Ended by warden (the sandbox went, its budget was spent, the relay idled): the
            # connection is closed, and asyncio's stream server must not see a cancelled
            # task (Python 3.11 logs one as an error).
            writer.close()
        finally:
            self.open -= 1
            self._tasks.discard(task)

    # -- any thread ----------------------------------------------------------------------------

    def events(self) -> list[NetworkEvent]:
        with self._log_lock:
            records = list(self._log)
        return [r.event() for r in records]


class Egress:
    """The process's egress service (see the module)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="warden-egress",
                                        daemon=True)
        self._thread.start()
        self._dialers: dict[str | None, tuple[netns.Dialer, int]] = {}
        self._lock = threading.Lock()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def attach(self, netns_fd: int, policy: NetworkPolicy | None,
               ca: tls.CertAuthority | None = None) -> Attachment:
        """warden's side of the sandbox whose network namespace is ``netns_fd``; with a
        policy, its proxy listens from now on. ``ca`` is the sandbox's own CA, for policies
        that inject headers into HTTPS requests."""
        att = self._on_loop(self._new(netns_fd))
        att.ca = ca
        try:
            self.set_policy(att, policy)
        except BaseException:
            self.detach(att)
            raise
        return att

    async def _new(self, netns_fd: int) -> Attachment:
        return Attachment(self, netns_fd)  # its semaphore belongs to this loop

    def set_policy(self, att: Attachment, policy: NetworkPolicy | None) -> None:
        """New connections of the sandbox go by ``policy`` (None: none at all)."""
        if policy is not None and policy.mode == "transparent" and att.gateway is None:
            att.gateway = transparent.open_gateway(att)  # first: a failure changes nothing
        old = att.policy
        want = None if policy is None else policy.egress_netns
        if policy is not None and (old is None or old.egress_netns != want):
            dialer = self._dialer(want)
            if att.dialer is not None:
                self._release(att.dialer)
            att.dialer = dialer
        att.policy = policy
        if policy is not None and att._server is None:
            listener = netns.in_netns(att.netns_fd, _listener)
            att._server = self._on_loop(asyncio.start_server(
                att.accept, sock=listener, limit=proxy.http.MAX_HEAD + 4))
        elif policy is None and att._server is not None:
            self._on_loop(_close_server(att._server))
            att._server = None
        if att.gateway is not None and (policy is None or policy.mode != "transparent"):
            self._close_gateway(att)

    def _close_gateway(self, att: Attachment) -> None:
        gw, att.gateway = att.gateway, None
        if gw is not None:
            self._on_loop(gw.close())
            os.close(gw.fd)

    def detach(self, att: Attachment) -> None:
        """End everything of the sandbox: its listener, connections, exposed ports and
        gateway."""
        self._on_loop(self._end(att))
        self._close_gateway(att)
        if att.dialer is not None:
            self._release(att.dialer)
            att.dialer = None
        os.close(att.netns_fd)

    async def _end(self, att: Attachment) -> None:
        if att._server is not None:
            await _close_server(att._server)
            att._server = None
        for server, _ in list(att.exposed.values()):
            await _close_server(server)
        att.exposed.clear()
        tasks = list(att._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _dialer(self, path: str | None) -> netns.Dialer:
        with self._lock:
            dialer, refs = self._dialers.get(path) or (None, 0)
            if dialer is None:
                dialer = netns.Dialer(path)
            self._dialers[path] = (dialer, refs + 1)
            return dialer

    def _release(self, dialer: netns.Dialer) -> None:
        with self._lock:
            _, refs = self._dialers[dialer.path]
            if refs > 1:
                self._dialers[dialer.path] = (dialer, refs - 1)
                return
            del self._dialers[dialer.path]
        dialer.close()

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._on_loop(fn())

    def dialers(self) -> int:
        """How many egress namespaces are held open (for tests of what is left behind)."""
        with self._lock:
            return len(self._dialers)


def _listener() -> socket.socket:
    return netns.listener("127.0.0.1", PROXY_PORT, BACKLOG)


async def _close_server(server: asyncio.base_events.Server) -> None:
    server.close()
    await server.wait_closed()


_egress: Egress | None = None
_lock = threading.Lock()


def egress() -> Egress:
    """The process's egress service, started on first use."""
    global _egress
    with _lock:
        if _egress is None:
            _egress = Egress()
        return _egress


def _forget_in_child() -> None:
    global _egress, _lock
    _egress = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
