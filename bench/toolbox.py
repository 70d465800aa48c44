"""The agent's toolbox against its peers, in one run: time from spawn to the first output
chunk (warden.Sandbox.spawn vs subprocess.Popen on the host); stdout streaming throughput
(Sandbox.exec with on_stdout vs subprocess with a pipe); terminal echo round trip (a byte
typed into Sandbox.terminal until its echo comes back vs a pty on the host); pause and resume
of a sandbox running a busy loop (Sandbox.pause/resume vs `docker pause`/`unpause` through the
engine's API, when a Docker engine answers at DOCKER_HOST), and what pause(reclaim=True) gives
back after the sandbox read files.

    python bench/toolbox.py [--runs 50] [--mib 256]      (root: native sandboxes)

Prints p50/p90 per peer and warden's ratio to the host peer.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import subprocess
import time

import warden


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def first_chunk_warden(sb: warden.Sandbox, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = sb.spawn(["echo", "x"], stdin=False)
        next(p.output(timeout=30))
        out.append(time.perf_counter() - t0)
        p.wait(timeout=30)
    return out


def first_chunk_host(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen(["echo", "x"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert p.stdout is not None
        os.read(p.stdout.fileno(), 1 << 16)
        out.append(time.perf_counter() - t0)
        p.wait()
        p.stdout.close()
    return out


def stream_warden(sb: warden.Sandbox, mib: int) -> float:
    got = [0]

    def count(d: bytes) -> None:
        got[0] += len(d)

    t0 = time.perf_counter()
    sb.exec(["head", "-c", str(mib << 20), "/dev/zero"], on_stdout=count,
            max_output_bytes=mib << 20, timeout=600)
    took = time.perf_counter() - t0
    assert got[0] == mib << 20
    return mib / took


def stream_host(mib: int) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(["head", "-c", str(mib << 20), "/dev/zero"], stdout=subprocess.PIPE)
    assert p.stdout is not None
    n = 0
    while chunk := os.read(p.stdout.fileno(), 1 << 16):
        n += len(chunk)
    p.wait()
    p.stdout.close()
    assert n == mib << 20
    return mib / (time.perf_counter() - t0)


def echo_warden(sb: warden.Sandbox, runs: int) -> list[float]:
    t = sb.terminal(["cat"])
    out = []
    for i in range(runs):
        ch = bytes([97 + i % 26])
        t0 = time.perf_counter()
        t.write(ch)
        while ch not in t.read(timeout=10):
            pass
        out.append(time.perf_counter() - t0)
    t.close()
    return out


def echo_host(runs: int) -> list[float]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("cat", ["cat"])
    out = []
    for i in range(runs):
        ch = bytes([97 + i % 26])
        t0 = time.perf_counter()
        os.write(fd, ch)
        while True:
            select.select([fd], [], [])
            if ch in os.read(fd, 1024):
                break
        out.append(time.perf_counter() - t0)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(fd)
    return out


BUSY = ["python3", "-c", "while True: pass"]


def pause_resume(sb: warden.Sandbox, runs: int) -> tuple[list[float], list[float]]:
    """(pause, resume) times of a sandbox whose busy loop runs between them."""
    sb.spawn(BUSY, stdin=False)
    paused, resumed = [], []
    for _ in range(runs):
        time.sleep(0.01)  # let it run
        t0 = time.perf_counter()
        sb.pause()
        t1 = time.perf_counter()
        sb.resume()
        t2 = time.perf_counter()
        paused.append(t1 - t0)
        resumed.append(t2 - t1)
    return paused, resumed


def docker_peer(runs: int) -> tuple[list[float], list[float]] | None:
    """The same through the Docker provider (docker pause/unpause), or None with the reason
    printed."""
    try:
        with warden.Sandbox(provider="docker",
                            limits=warden.Limits(wall_time_s=600)) as sb:
            return pause_resume(sb, runs)
    except (warden.ProviderUnavailable, ImportError) as exc:
        print(f"{'pause/resume peer':<28} skipped: no Docker engine ({exc})"[:200])
        return None


LIBS = "/usr/lib/x86_64-linux-gnu"


def _uncache(top: str) -> None:
    """Drop the page cache of the files in ``top`` (theirs alone), so that the sandbox's read
    charges them to its cgroup whoever read them before."""
    for name in os.listdir(top):
        try:
            fd = os.open(os.path.join(top, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def reclaim_figure() -> None:
    """What pause(reclaim=True) gives back after the sandbox read the host's libraries."""
    _uncache(LIBS)
    with warden.Sandbox(limits=warden.Limits(memory_mb=1024, wall_time_s=600)) as sb:
        sb.spawn(["python3", "-c", "import sys; sys.stdin.read()"])
        sb.exec(["sh", "-c", f"cat {LIBS}/*.so* >/dev/null 2>&1; true"])
        t0 = time.perf_counter()
        given = sb.pause(reclaim=True)
        took = time.perf_counter() - t0
        sb.resume()
        alive = len(sb.processes())
    print(f"{'pause(reclaim=True)':<28} gave back {given / 2**20:8.1f} MiB in "
          f"{took * 1e3:.1f} ms; {alive} process(es) alive after resume")


def show(what: str, ours: list[float], peer: list[float], peer_name: str) -> None:
    a, b = statistics.median(ours), statistics.median(peer)
    print(f"{what:<28} warden p50 {a * 1e3:8.2f} ms p90 {pct(ours, .9) * 1e3:8.2f} ms | "
          f"{peer_name} p50 {b * 1e3:8.2f} ms p90 {pct(peer, .9) * 1e3:8.2f} ms | "
          f"ratio {a / b:6.3g}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=600)) as sb:
        show("spawn -> first chunk", first_chunk_warden(sb, args.runs),
             first_chunk_host(args.runs), "Popen")
        show("terminal echo round trip", echo_warden(sb, args.runs), echo_host(args.runs),
             "host pty")
        ours, peer = stream_warden(sb, args.mib), stream_host(args.mib)
        print(f"{'stdout streaming':<28} warden {ours:8.0f} MiB/s | subprocess pipe "
              f"{peer:8.0f} MiB/s | ratio {peer / ours:6.1f}x slower")
    with warden.Sandbox(limits=warden.Limits(wall_time_s=600)) as sb:
        paused, resumed = pause_resume(sb, args.runs)
    peer_times = docker_peer(args.runs)
    if peer_times is None:
        for what, xs in (("pause (busy loop)", paused), ("resume", resumed)):
            print(f"{what:<28} warden p50 {statistics.median(xs) * 1e3:8.2f} ms "
                  f"p90 {pct(xs, .9) * 1e3:8.2f} ms")
    else:
        show("pause (busy loop)", paused, peer_times[0], "docker pause")
        show("resume", resumed, peer_times[1], "docker unpause")
    reclaim_figure()


if __name__ == "__main__":
    main()
