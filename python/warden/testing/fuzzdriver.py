"""One ``warden fuzz`` job: libFuzzer (atheris) on the host, each input run in a fork server.

The mutation loop runs here, outside the sandbox; the target runs inside it, instrumented by
atheris there (warden.testing.fuzzshim). Each input is one fork server input: a fresh
copy-on-write child of the state after the target was loaded, with the per-input limits and
an exact Verdict. The child answers with the counters it hit and the operands of its
comparisons; this process replays them into its own atheris counters (``_trace_branch``) and
comparison hooks (``_trace_cmp``, which feed libFuzzer's table of compared values), so
libFuzzer's coverage feedback, corpus and CMP-guided mutations work as if the target ran in
this process. A failing input is not a crash of this process: it goes to the CrashStore and
fuzzing goes on.

What comes back from the sandbox is checked before it is replayed: counter ids within what
setup reserved, hits one byte per counter, comparisons of bounded bytes, str and int only.

Run as ``python -m warden.testing.fuzzdriver CONFIG.json``; it ends itself (closing its fork
server, writing how many inputs it ran to ``runs`` in its work directory) when its time is up
or at the first input after a SIGINT or SIGTERM. Exit status: 0 when the time was up, 3 when the target could
not be loaded (the error on stderr), 4 when atheris is missing, 5 when the fork server
failed past what it restarts by itself.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
from typing import Any

from warden.errors import WardenError
from warden.spec.limits import Limits
from warden.testing.crashes import CrashStore
from warden.testing.forkserver import ForkServer
from warden.testing.fuzzshim import SOURCE

__all__ = ["EXIT_ATHERIS", "EXIT_SERVER", "EXIT_SETUP", "Replay", "main"]

EXIT_SETUP, EXIT_ATHERIS, EXIT_SERVER = 3, 4, 5
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
            # A safety net only: this job ends itself at its deadline, closing its sandbox.
            f"-max_total_time={int(cfg['time_s']) + 60}",
            f"-timeout={int(cfg['per_input']['wall_time_s'] + 30)}",
            f"-artifact_prefix={cfg['workdir']}{os.sep}", "-print_final_stats=0",
            # SIGINT and SIGTERM end the job through Python (above), not libFuzzer's exit.
            "-handle_int=0", "-handle_term=0"]
    if cfg.get("seed") is not None:
        args.append(f"-seed={cfg['seed']}")
    return args


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as f:
        cfg = json.load(f)
    try:
        import atheris
    except ImportError:
        print("warden fuzz needs atheris: pip install atheris (or warden's dev extras)",
              file=sys.stderr)
        return EXIT_ATHERIS
    deadline = time.monotonic() + float(cfg["time_s"])
    try:
        fs = _fork_server(cfg)
        counters = fs.run(None).value
        if type(counters) is not int or not 0 <= counters < 1 << 24:
            raise WardenError("the fuzz target's sandbox said no counter count")
    except WardenError as exc:
        print(f"warden fuzz: the target could not be loaded: {exc}", file=sys.stderr)
        return EXIT_SETUP
    replay = Replay(atheris, counters)
    store = CrashStore(cfg["crashes"], cfg["log"])

    runs = [0]
    stop = [False]

    def on_signal(signum: int, frame: object) -> None:
        stop[0] = True  # ended at the next input, with its sandbox closed
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def end(status: int) -> None:
        fs.close()
        fs.provider.close()
        with open(os.path.join(cfg["workdir"], "runs"), "w", encoding="utf-8") as f:
            f.write(str(runs[0]))
        # libFuzzer has no way back to here (it ends the process itself), so the clean-up
        # warden registered for exit (made-ahead sandboxes, cgroups, areas) runs now.
        atexit._run_exitfuncs()
        sys.stderr.flush()
        os._exit(status)

    def test_one_input(data: bytes) -> None:
        if stop[0] or time.monotonic() >= deadline:
            end(0)
        runs[0] += 1
        try:
            v = fs.run(bytes(data))
        except WardenError as exc:
            print(f"warden fuzz: the fork server failed: {exc}", file=sys.stderr)
            end(EXIT_SERVER)
        if v.outcome == "ok":
            replay(v.value)
        else:
            store.record(bytes(data), v)

    atheris.Setup(_libfuzzer_args(cfg), test_one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
