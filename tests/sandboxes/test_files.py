"""warden.Sandbox's files and errors, black-box in real sandboxes on the native provider: what
a caller catches for a missing file, a full disk, a link planted inside (at the end of a path,
in its middle, or swapped in while reads run), and code that raises or cannot start a thread."""

from __future__ import annotations

import errno

import pytest
import warden
from warden import DiskQuotaExceeded, PathEscapeError, PidsLimitExceeded, PluginError, WardenError

from tests.plugins.test_plugins import native_ok
from tests.wire.test_paths import EXCHANGE_SOURCE


@pytest.fixture(params=[False, True], ids=["workspace", "readonly-workspace"])
def box(request):
    """A sandbox whose files go through its worker, and one whose read-only workspace the
    host writes from outside."""
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30), readonly=request.param) as sb:
        yield sb


@pytest.mark.parametrize("path", ["missing.txt", "./sub/missing.txt"])
def test_a_missing_file_is_file_not_found_and_a_warden_error(box, path):
    box.files.write("sub/there.txt", b"x")
    for op in (box.files.read, box.files.remove, box.files.list):
        with pytest.raises(FileNotFoundError) as info:
            op(path)
        err = info.value
        assert isinstance(err, WardenError) and isinstance(err, warden.SandboxFileError)
        assert (err.errno, err.filename) == (errno.ENOENT, path)
        assert box.id in str(err) and "warden-ws" not in str(err)  # no host directory


def test_other_file_errors_are_their_oserrors(box):
    box.files.write("sub/f.txt", b"x")
    with pytest.raises(IsADirectoryError) as info:
        box.files.read("sub")
    assert info.value.filename == "sub"
    with pytest.raises(NotADirectoryError) as info:
        box.files.write("sub/f.txt/deeper", b"x")
    assert info.value.filename == "sub/f.txt/deeper"
    with pytest.raises(NotADirectoryError):
        box.files.list("sub/f.txt")


def test_writing_past_the_disk_quota_is_disk_quota_exceeded():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(disk_mb=8, wall_time_s=30)) as sb:
        with pytest.raises(DiskQuotaExceeded) as info:
            sb.files.write("big.bin", b"x" * (9 << 20))
        assert "8 MiB" in str(info.value) and "'big.bin'" in str(info.value)
        sb.files.remove("big.bin")
        sb.files.write("small.bin", b"fits")  # the sandbox serves on
        assert sb.files.read("small.bin") == b"fits"


@pytest.fixture
def planted():
    """A sandbox whose code planted links in its workspace: one to a file outside it, one
    to a directory outside it, one that stays inside."""
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30)) as sb:
        r = sb.run_python(
            "import os\n"
            "os.makedirs('/tmp/outside', exist_ok=True)\n"
            "open('/tmp/outside/secret', 'w').write('OUTSIDE')\n"
            "os.makedirs('real', exist_ok=True)\n"
            "open('real/f', 'w').write('inside')\n"
            "os.symlink('/tmp/outside/secret', 'leaf')\n"
            "os.symlink('/tmp/outside', 'mid')\n"
            "os.symlink('real', 'inner')\n")
        assert r.exit_code == 0, r.stderr
        yield sb


@pytest.mark.parametrize("path", ["leaf", "mid/secret", "mid/new.txt", "inner/f"])
def test_a_link_planted_inside_is_refused_for_read_and_write(planted, path):
    with pytest.raises(PathEscapeError) as info:
        planted.files.read(path)
    assert info.value.path == path and repr(path) in str(info.value)
    with pytest.raises(PathEscapeError):
        planted.files.write(path, b"overwritten")
    r = planted.exec(["cat", "/tmp/outside/secret"])
    assert r.stdout == b"OUTSIDE"  # nothing written through the link
    assert planted.exec(["ls", "/tmp/outside"]).stdout.split() == [b"secret"]
    assert planted.files.read("real/f") == b"inside"


RACER = EXCHANGE_SOURCE + """
import os
os.makedirs('/tmp/outside', exist_ok=True)
open('/tmp/outside/secret', 'w').write('OUTSIDE')
os.makedirs('d', exist_ok=True)
open('d/secret', 'w').write('inside')
os.symlink('/tmp/outside', 'other')
open('started', 'w').close()
n = 0
while not os.path.exists('stop'):
    for _ in range(64):
        exchange('d', 'other')
    n += 64
    with open('count.tmp', 'w') as f:
        f.write(str(n))
    os.replace('count.tmp', 'count')
"""


def test_a_directory_swapped_for_a_link_while_reads_run_never_leads_out():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=60)) as sb:
        sb.files.write("racer.py", RACER)
        r = sb.exec(["sh", "-c", "python3 racer.py >racer.log 2>&1 </dev/null &"])
        assert r.exit_code == 0
        for _ in range(1000):
            if "started" in sb.files.list():
                break
        else:
            pytest.fail(f"the racer did not start: {sb.files.read('racer.log')!r}")
        seen = {"inside": 0, "refused": 0}
        for _ in range(600):
            try:
                got = sb.files.read("d/secret")
            except PathEscapeError:
                seen["refused"] += 1
                continue
            assert got == b"inside", got
            seen["inside"] += 1
        sb.files.write("stop", b"")
        assert int(sb.files.read("count")) > 0, sb.files.read("racer.log")


def test_code_that_raises_is_a_plugin_error_that_speaks_of_the_sandbox():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=30)) as sb:
        with pytest.raises(PluginError) as info:
            sb.call("def opener(p):\n    return open(p).read()\n", "/nope/x")
        err = info.value
        assert str(err).startswith(f"code in sandbox {sb.id} raised FileNotFoundError")
        assert "plugin" not in str(err)
        assert (err.type, err.errno, err.path) == ("FileNotFoundError", errno.ENOENT, "/nope/x")


def test_threads_refused_at_the_pids_limit_are_pids_limit_exceeded():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(pids=16, wall_time_s=60)) as sb:
        with pytest.raises(PidsLimitExceeded) as info:
            sb.call("def spawn(_):\n"
                    "    import threading\n"
                    "    ev, started = threading.Event(), []\n"
                    "    try:\n"
                    "        while True:\n"
                    "            t = threading.Thread(target=ev.wait)\n"
                    "            t.start()\n"
                    "            started.append(t)\n"
                    "    finally:\n"
                    "        ev.set()\n"
                    "        for t in started:\n"
                    "            t.join()\n")
        assert "pids limit of 16" in str(info.value)
        assert isinstance(info.value.__cause__, PluginError)
        assert info.value.__cause__.resource == "thread"
