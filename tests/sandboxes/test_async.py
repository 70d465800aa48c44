"""warden.AsyncSandbox on the native provider: the same methods awaited, the event loop never
blocked, cancellation killing the command, and 200 concurrent tasks on one sandbox."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import uuid

import warden
from warden import ExecResult

from tests.plugins.test_plugins import native_ok

LIMITS = warden.Limits(wall_time_s=60, pids=256)


def _host_pids(marker: str) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_the_sandbox_methods_awaited():
    native_ok()

    async def go() -> None:
        async with warden.AsyncSandbox(limits=LIMITS) as sb:
            await sb.files.write("a.txt", "hello")
            assert await sb.files.read("a.txt") == b"hello"
            assert await sb.files.list() == ["a.txt"]
            chunks: list[bytes] = []

            async def on_out(data: bytes) -> None:
                chunks.append(data)

            r = await sb.exec(["sh", "-c", 'cat a.txt; echo " $X"; cat; echo err >&2; exit 4'],
                              env={"X": "y"}, stdin=b"in\n", on_stdout=on_out)
            assert (r.exit_code, r.reason) == (4, "exited")
            assert r.stdout == b"hello y\nin\n" == b"".join(chunks) and r.stderr == b"err\n"
            assert (await sb.exec(["pwd"], cwd="/tmp")).stdout == b"/tmp\n"
            assert (await sb.run_python("print(6 * 7)")).stdout == b"42\n"
            assert await sb.call("def double(x):\n    return 2 * x\n", 21) == 42
            p = await sb.spawn(["sh", "-c", "read x; echo got $x"])
            assert [i.pid for i in await sb.processes()] == [p.pid]
            await (await sb.attach(p.pid)).write(b"it\n")
            seen = [c async for c in p.output(timeout=20)]
            assert seen == [("stdout", b"got it\n")] and await p.poll() == 0
            t = await sb.terminal(["sh"])
            await t.write(b"echo te''rm\n")
            out = b""
            while b"term\r\n" not in out:
                out += await t.read(timeout=20)
            await t.resize(100, 30)
            await t.close()
            await sb.files.mkdir("d")
            await sb.files.rename("a.txt", "d/b.txt")
            assert [e.path for e in await sb.files.entries(recursive=True)] == ["d", "d/b.txt"]
            assert (await sb.files.stat("d/b.txt")).size == 5
            assert await sb.files.upload(io.BytesIO(b"up"), "u") == 2
            got = io.BytesIO()
            assert await sb.files.download("u", got) == 2 and got.getvalue() == b"up"
            e = await sb.run_code("x = 2\nx * 21")
            assert e.result == "42" and await sb.contexts() == ["default"]
            await sb.reset_context("default")
            await sb.files.remove("d")

    asyncio.run(go())


def test_the_loop_runs_while_a_command_does():
    """The command waits for a file that another task writes while it runs: with the loop or
    the sandbox blocked by the command, the file would never come and the command would
    time out."""
    native_ok()

    async def go() -> ExecResult:
        async with warden.AsyncSandbox(limits=LIMITS) as sb:
            async def flag_later() -> None:
                await asyncio.sleep(0.3)
                await sb.files.write("flag", "")

            writer = asyncio.ensure_future(flag_later())
            r = await sb.exec(["sh", "-c", "while [ ! -e flag ]; do sleep 0.05; done; echo seen"],
                              timeout=20)
            await writer
            return r

    r = asyncio.run(go())
    assert (r.reason, r.stdout) == ("exited", b"seen\n")


def test_cancelling_an_exec_kills_its_command():
    native_ok()
    marker = f"warden-cancel-{uuid.uuid4().hex}"

    async def go() -> list[int]:
        async with warden.AsyncSandbox(limits=LIMITS) as sb:
            task = asyncio.ensure_future(sb.exec(["sh", "-c", "sleep 300 & wait", marker]))
            while not _host_pids(marker):
                await asyncio.sleep(0.05)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            left = _host_pids(marker)
            assert all(i.argv[-1] != marker for i in await sb.processes())
            r = await sb.exec(["sh", "-c", "ps -eo comm= | grep -c sleep || true"])
            assert r.stdout == b"0\n"  # the group went, its background sleep too
            return left

    assert asyncio.run(go()) == []


def test_an_exec_past_its_timeout_is_killed():
    native_ok()

    async def go() -> ExecResult:
        async with warden.AsyncSandbox(limits=LIMITS) as sb:
            return await sb.exec(["sleep", "100"], timeout=0.5)

    r = asyncio.run(go())
    assert (r.reason, r.signal) == ("timeout", signal.SIGKILL)


def test_two_hundred_concurrent_tasks_on_one_sandbox():
    native_ok()

    async def go() -> list[ExecResult]:
        async with warden.AsyncSandbox(limits=LIMITS) as sb:
            return await asyncio.gather(*(sb.exec(["echo", str(i)], timeout=120)
                                          for i in range(200)))

    results = asyncio.run(go())
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(200)]
    assert all(r.ok for r in results)
