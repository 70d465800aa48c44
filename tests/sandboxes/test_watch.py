"""Sandbox.watch and AsyncSandbox.watch on the native provider: inotify inside a real sandbox,
its events read by the host as hostile input, its limits reached for real.

Ordering is asserted with marker files: each step ends by creating one, and the events are
read until it shows, never for a time."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading

import pytest
import warden
from warden import PathEscapeError, ProtocolError, WatchEvent, WatchLimitExceeded
from warden.providers.native.state import state_of
from warden.sandboxes.watch import parse_line

from tests.conftest import require
from tests.plugins.test_plugins import native_ok

LIMITS = warden.Limits(wall_time_s=60, pids=256)
# Counts the inotify instances of every process in the sandbox (its own /proc).
COUNT_INOTIFY = ("n=0; for f in /proc/[0-9]*/fd/*; do "
                 "case $(readlink $f 2>/dev/null) in *inotify*) n=$((n+1));; esac; done; "
                 "echo $n")


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=LIMITS) as box:
        yield box


def until(events, marker: str) -> list[WatchEvent]:
    """The events up to the creation of ``marker`` (not included)."""
    got = []
    for ev in events:
        if ev.kind == "created" and ev.path == marker:
            return got
        got.append(ev)
    raise AssertionError(f"the watch ended before {marker} was made; got {got}")


def test_each_kind_of_event_with_its_path_and_type(sb):
    with sb.watch() as w:
        events = iter(w)
        sb.exec(["sh", "-c", "mkdir d; echo one > d/f; echo two >> d/f; mv d/f d/g; "
                             "rm d/g; mv d e; rmdir e; touch m1"])
        got = until(events, "m1")
    # Writes that one read of inotify brings together are one change.
    got = [ev for i, ev in enumerate(got) if ev.kind != "modified" or got[i - 1] != ev]
    assert got == [
        WatchEvent("created", "d", None, True),
        WatchEvent("created", "d/f", None, False),
        WatchEvent("modified", "d/f", None, False),
        WatchEvent("moved", "d/f", "d/g", False),
        WatchEvent("deleted", "d/g", None, False),
        WatchEvent("moved", "d", "e", True),
        WatchEvent("deleted", "e", None, True),
    ]


def test_not_recursive_sees_only_its_own_directory(sb):
    sb.files.mkdir("top/sub")
    with sb.watch("top", recursive=False) as w:
        events = iter(w)
        sb.exec(["sh", "-c", "touch top/sub/deep; touch top/flat; touch top/m"])
        assert until(events, "top/m") == [WatchEvent("created", "top/flat", None, False)]


def test_recursive_watches_existing_and_new_subdirectories(sb):
    sb.files.mkdir("a/b")
    with sb.watch("a") as w:
        assert w.watched == 2
        events = iter(w)
        sb.exec(["sh", "-c", "echo x > a/b/old; mkdir -p a/new/deeper; touch a/m1"])
        first = until(events, "a/m1")
        sb.exec(["sh", "-c", "echo y > a/new/deeper/late; touch a/m2"])
        second = until(events, "a/m2")
    assert WatchEvent("created", "a/b/old", None, False) in first
    assert WatchEvent("created", "a/new", None, True) in first
    assert WatchEvent("created", "a/new/deeper", None, True) in first
    # A directory made after the watch started is watched too.
    assert WatchEvent("created", "a/new/deeper/late", None, False) in second
    assert WatchEvent("modified", "a/new/deeper/late", None, False) in second


def test_links_are_not_followed_by_the_watch_or_the_host(sb):
    sb.files.mkdir("real")
    sb.exec(["sh", "-c", "ln -s /tmp ws_link; ln -s /tmp real/inner"])
    with pytest.raises(PathEscapeError):
        sb.watch("ws_link")
    with sb.watch() as w:
        events = iter(w)
        # Writes through links to outside the tree are not events of it; a directory
        # swapped for a link is not descended into.
        sb.exec(["sh", "-c", "touch /tmp/outside real/inner/via_link; mv real real.old; "
                             "ln -s /tmp real; touch /tmp/after_swap; touch m1"])
        got = until(events, "m1")
    paths = {p for ev in got for p in (ev.path, ev.dest) if p}
    assert paths == {"real", "real.old"}
    assert WatchEvent("moved", "real", "real.old", True) in got
    assert WatchEvent("created", "real", None, False) in got


def test_hostile_lines_are_refused():
    ok = parse_line(b'{"kind": "moved", "path": "a", "dest": "b", "dir": false}')
    assert ok == WatchEvent("moved", "a", "b", False)
    for line in (b'{"kind": "created", "path": "../etc/passwd", "dest": null, "dir": false}',
                 b'{"kind": "created", "path": "/etc/passwd", "dest": null, "dir": false}',
                 b'{"kind": "created", "path": "a\\u0000b", "dest": null, "dir": false}',
                 b'{"kind": "moved", "path": "a", "dest": "x/../../y", "dir": false}',
                 b'{"kind": "moved", "path": "a", "dest": null, "dir": false}',
                 b'{"kind": "created", "path": "a", "dest": null, "dir": 1}',
                 b'{"kind": "exploded", "path": "a", "dest": null, "dir": false}',
                 b'{"kind": "created", "path": "' + b"a" * 5000 + b'", "dest": null, "dir": false}',
                 b'{"error": "limit", "limit": "anything", "errno": 28}',
                 b'[' * 100000, b"not json", b"[]", b"{" + b" " * (70 << 10) + b"}"):
        with pytest.raises(ProtocolError):
            parse_line(line)


def test_a_tree_beyond_the_inotify_limit_is_a_clear_error(sb):
    # The limit of the sandbox's own user namespace (user.max_inotify_watches, which the
    # kernel checks at every level up): the host's setting is not touched.
    require(shutil.which("nsenter") is not None, "nsenter (util-linux) is needed")
    pid = state_of(sb._handle).pid
    subprocess.run(["nsenter", "-U", "-t", str(pid), "--", "sh", "-c",
                    "echo 4 > /proc/sys/user/max_inotify_watches"], check=True)
    sb.exec(["sh", "-c", "mkdir -p t/1 t/2 t/3 t/4 t/5 small/1"])
    with pytest.raises(WatchLimitExceeded) as info:
        sb.watch("t")
    assert (info.value.limit, info.value.watched, info.value.path) == ("max_user_watches", 4, "t")
    assert "max_user_watches" in str(info.value)
    assert sb.exec(["sh", "-c", COUNT_INOTIFY]).stdout == b"0\n"  # nothing left watching
    # Growing past the limit later is the same error, from the iteration.
    w = sb.watch("small")
    assert w.watched == 2
    sb.exec(["sh", "-c", "mkdir small/2 small/3 small/4"])
    with pytest.raises(WatchLimitExceeded):
        for _ in w:
            pass
    assert sb.exec(["sh", "-c", COUNT_INOTIFY]).stdout == b"0\n"


def test_the_instances_limit_is_named(sb):
    require(shutil.which("nsenter") is not None, "nsenter (util-linux) is needed")
    pid = state_of(sb._handle).pid
    subprocess.run(["nsenter", "-U", "-t", str(pid), "--", "sh", "-c",
                    "echo 0 > /proc/sys/user/max_inotify_instances"], check=True)
    with pytest.raises(WatchLimitExceeded) as info:
        sb.watch()
    assert info.value.limit == "max_user_instances"


def test_closing_the_watch_frees_its_inotify_instance(sb):
    w = sb.watch()
    assert sb.exec(["sh", "-c", COUNT_INOTIFY]).stdout == b"1\n"
    assert len(sb.processes()) == 1
    events = iter(w)
    sb.files.write("x", "1")
    assert next(events).path == "x"
    events.close()  # leaving the loop early
    assert sb.exec(["sh", "-c", COUNT_INOTIFY]).stdout == b"0\n"
    assert sb.processes() == []
    w.close()  # again: nothing


def test_closing_the_sandbox_ends_the_iteration():
    native_ok()
    box = warden.Sandbox(limits=LIMITS)
    seen, outcome = threading.Event(), []
    w = box.watch()

    def read() -> None:
        try:
            for ev in w:
                outcome.append(ev)
                seen.set()
            outcome.append("ended")
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        box.files.write("x", "1")
        assert seen.wait(30)
    finally:
        box.close()
    reader.join(30)
    assert not reader.is_alive()
    assert outcome[-1] == "ended", outcome


def test_async_watch():
    native_ok()

    async def go() -> list[WatchEvent]:
        async with warden.AsyncSandbox(limits=LIMITS) as sb:
            got = []
            async with await sb.watch() as w:
                await sb.exec(["sh", "-c", "mkdir d; touch d/f; touch m"])
                async for ev in w:
                    if ev.path == "m":
                        break
                    got.append(ev)
            assert await sb.processes() == []
            return got

    assert asyncio.run(go()) == [WatchEvent("created", "d", None, True),
                                 WatchEvent("created", "d/f", None, False)]
