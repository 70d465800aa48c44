"""One ``warden fuzz`` job: libFuzzer (atheris) on the host, each input run in a fork server.

The mutation loop runs outside the sandbox; the target runs inside it, instrumented by
atheris there (warden.testing.fuzzshim). Each input is one fork server input: a fresh
copy-on-write child of the state after the target was loaded, with the per-input limits and
an exact Verdict. The child answers with the counters it hit and the operands of its
comparisons; the fuzzer replays them into its own atheris counters (``_trace_branch``) and
comparison hooks (``_trace_cmp``, which feed libFuzzer's table of compared values), so
libFuzzer's coverage feedback, corpus and CMP-guided mutations work as if the target ran in
the fuzzer's process. A failing input is not a crash of the fuzzer: it goes to the
CrashStore and fuzzing goes on.

Two processes: this one (the *server*) owns the fork server, and a child forked before any
sandbox or thread exists runs libFuzzer, which ends its process itself and never returns to
warden's clean-up. They speak over two pipes: the fuzzer sends an input, the server answers
with its coverage (carry-encoded) or an empty frame for a failing input.

What comes back from the sandbox is checked before it is replayed: counter ids within what
setup reserved, hits one byte per counter, comparisons of bounded bytes, str and int only.

Run as ``python -m warden.testing.fuzzdriver CONFIG.json``; it ends (closing its fork server,
writing how many inputs it ran to ``runs`` in its work directory) when its time is up or at
the first input after a SIGINT or SIGTERM. Exit status: 0 when the time was up, 3 when the
target could not be loaded (the error on stderr), 4 when atheris is missing, 5 when the fork
server failed past what it restarts by itself, 6 when libFuzzer ended by itself with an error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import struct
import sys
import time
from typing import Any

from warden.errors import WardenError
from warden.guest import carry
from warden.spec.limits import Limits
from warden.testing.crashes import CrashStore
from warden.testing.forkserver import ForkServer
from warden.testing.fuzzshim import SOURCE

__all__ = ["EXIT_ATHERIS", "EXIT_FUZZER", "EXIT_SERVER", "EXIT_SETUP", "Replay", "main"]

EXIT_SETUP, EXIT_ATHERIS, EXIT_SERVER, EXIT_FUZZER = 3, 4, 5, 6
_SETUP_AT = "/setup"
_MAX_HITS = 128
_MAX_CMP_LEN = 64


class _Source(str):
    """setup source with the host directory ForkServer binds at /setup."""

    bind_dir = ""


class Replay:
    """Replays a child's coverage into this process's atheris counters."""

    def __init__(self, atheris: Any, counters: int) -> None:
        self.atheris = atheris
        self.ids = [atheris._reserve_counter() for _ in range(counters)]

    def __call__(self, value: object) -> None:
        if not isinstance(value, list) or len(value) != 3:
            return
        ids, hits, cmps = value
        if not (isinstance(ids, bytes) and isinstance(hits, bytes) and isinstance(cmps, list)
                and len(ids) == 4 * len(hits)):
            return
        branch = self.atheris._trace_branch
        n = len(self.ids)
        for i in range(len(hits)):
            idx = int.from_bytes(ids[4 * i:4 * i + 4], "little")
            if idx < n:
                for _ in range(min(hits[i], _MAX_HITS)):
                    branch(self.ids[idx])
        for c in cmps:
            self._cmp(c)

    def _cmp(self, c: object) -> None:
        if not isinstance(c, list) or len(c) != 5:
            return
        left, right, op, idx, const = c
        t = type(left)
        if (t is not type(right) or t not in (bytes, str, int) or type(op) is not int
                or not 0 <= op < 256 or type(idx) is not int or not 0 <= idx < len(self.ids)):
            return
        if t is not int and (len(left) > _MAX_CMP_LEN or len(right) > _MAX_CMP_LEN):
            return
        if t is int and not (-(1 << 63) <= left < 1 << 64 and -(1 << 63) <= right < 1 << 64):
            return
        try:
            self.atheris._trace_cmp(left, right, op, self.ids[idx], bool(const))
        except Exception:  # an operand atheris refuses is feedback lost, nothing more
            return


def _fork_server(cfg: dict) -> ForkServer:
    target = os.path.abspath(cfg["target"])
    source = _Source(SOURCE.format(target=f"{_SETUP_AT}/{os.path.basename(target)}"))
    source.bind_dir = os.path.dirname(target)
    limits = Limits(**cfg["limits"]) if cfg.get("limits") else None
    return ForkServer(source, entry="target", per_input=Limits(**cfg["per_input"]),
                      limits=limits)


def _libfuzzer_args(cfg: dict) -> list[str]:
    args = [sys.argv[0], cfg["corpus"], f"-max_len={cfg['max_len']}",
            # No -max_total_time, and a -timeout that never fires: the server ends the job at
            # its deadline, and every request to the fork server has a timeout of its own.
            # (-timeout=0 still lets a SIGALRM end the fuzzer, seen under strace.)
            "-timeout=1000000",
            f"-artifact_prefix={cfg['workdir']}{os.sep}", "-print_final_stats=0",
            # SIGINT and SIGTERM end the job through Python (above), not libFuzzer's exit.
            "-handle_int=0", "-handle_term=0"]
    if cfg.get("seed") is not None:
        args.append(f"-seed={cfg['seed']}")
    return args


_FRAME = struct.Struct("<I")


def _send(fd: int, data: bytes) -> None:
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _recv(fd: int) -> bytes | None:
    """One frame, or None when the other side is gone."""
    head = _read(fd, _FRAME.size)
    return None if head is None else _read(fd, _FRAME.unpack(head)[0])


def _read(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _fuzzer(cfg: dict, to_server: int, from_server: int) -> None:
    """The libFuzzer side (a child process): each input to the server, its coverage back.
    Ends with os._exit when the server stops answering; it holds nothing to clean up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when to end
    import atheris

    first = _recv(from_server)
    if first is None:
        os._exit(0)
    replay = Replay(atheris, int.from_bytes(first, "little"))

    def test_one_input(data: bytes) -> None:
        try:
            _send(to_server, bytes(data))
        except BrokenPipeError:
            os._exit(0)
        reply = _recv(from_server)
        if reply is None:
            os._exit(0)
        if reply:
            replay(carry.decode(reply))

    atheris.Setup(_libfuzzer_args(cfg), test_one_input)
    atheris.Fuzz()
    os._exit(0)


def _serve(cfg: dict, fs: ForkServer, from_fuzzer: int, to_fuzzer: int) -> int:
    """Runs the fuzzer's inputs until the deadline or a signal; how many."""
    deadline = time.monotonic() + float(cfg["time_s"])
    store = CrashStore(cfg["crashes"], cfg["log"])
    stop = [False]

    def on_signal(signum: int, frame: object) -> None:
        stop[0] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runs = 0
    while not stop[0] and time.monotonic() < deadline:
        data = _recv(from_fuzzer)
        if data is None:
            break
        runs += 1
        v = fs.run(data)
        if v.outcome == "ok":
            _send(to_fuzzer, carry.encode(v.value, "coverage"))
        else:
            store.record(data, v)
            _send(to_fuzzer, b"")
    return runs


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as f:
        cfg = json.load(f)
    if importlib.util.find_spec("atheris") is None:
        print("warden fuzz needs atheris: pip install atheris (or warden's dev extras)",
              file=sys.stderr)
        return EXIT_ATHERIS
    # libFuzzer ends its process itself, never returning to warden's clean-up: so it runs in
    # a child of this process, forked before any sandbox or thread exists, and this process
    # owns the fork server and ends normally.
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(in_r)
        os.close(out_w)
        try:
            _fuzzer(cfg, in_w, out_r)
        finally:
            os._exit(70)
    os.close(in_w)
    os.close(out_r)
    status, runs = 0, 0
    try:
        with _fork_server(cfg) as fs:
            counters = fs.run(None).value
            if type(counters) is not int or not 0 <= counters < 1 << 24:
                raise WardenError("the fuzz target's sandbox said no counter count")
            _send(out_w, counters.to_bytes(4, "little"))
            try:
                runs = _serve(cfg, fs, in_r, out_w)
            except WardenError as exc:
                print(f"warden fuzz: the fork server failed: {exc}", file=sys.stderr)
                status = EXIT_SERVER
    except WardenError as exc:
        print(f"warden fuzz: the target could not be loaded: {exc}", file=sys.stderr)
        status = EXIT_SETUP
    finally:
        os.close(out_w)  # the fuzzer ends at its next input
        os.close(in_r)
        fuzzer = os.waitpid(pid, 0)[1]
    if status == 0 and fuzzer != 0:
        print(f"warden fuzz: libFuzzer ended by itself (wait status {fuzzer}); its output is "
              "above", file=sys.stderr)
        status = EXIT_FUZZER
    with open(os.path.join(cfg["workdir"], "runs"), "w", encoding="utf-8") as f:
        f.write(str(runs))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
