"""scan_paths on hostile plugin bundles: links are refused and never followed, only regular files
are read (a FIFO never blocks, a device is never read), a file over max_file_bytes is refused,
and running out of memory is one file's error, never the end of the host. Each refusal is a
``file-unreadable`` finding whose message names the path and the reason, and quotes nothing
from the file."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading

import pytest
import warden
from warden import _core
from warden.scan import DEFAULT_MAX_FILE_BYTES, Policy

SECRET = "TOP-SECRET-HOST-CONTENT"
LINK = "is a symbolic link; warden does not follow links in plugin bundles"


def _only_finding(res: dict, path) -> warden.Finding:
    fs = res[str(path)]
    assert len(fs) == 1, fs
    return fs[0]


def _refused(res: dict, path, reason: str) -> str:
    f = _only_finding(res, path)
    assert f.rule == "file-unreadable"
    assert (f.line, f.col, f.filename) == (0, 0, str(path))
    assert str(path) in f.message and reason in f.message, f.message
    assert SECRET not in f.message
    return f.message


def _scan_with_deadline(paths, seconds: float = 10.0, **kw) -> dict:
    """scan_paths on a thread: a reader that blocks shows up as a thread still running, not as
    a test suite that never ends."""
    box: dict = {}

    def run():
        try:
            box["res"] = warden.scan_paths(paths, **kw)
        except BaseException as exc:  # handed to the test thread, which raises it
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"scan_paths({paths}) still running after {seconds}s: it blocked"
    if "exc" in box:
        raise box["exc"]
    return box["res"]


@pytest.fixture
def outside(tmp_path):
    """A file outside the scanned directory, with content that must never be read."""
    d = tmp_path / "outside"
    d.mkdir()
    secret = d / "secret.py"
    secret.write_text(f"import os  # {SECRET}\n")
    return secret


@pytest.fixture
def bundle(tmp_path):
    d = tmp_path / "bundle"
    d.mkdir()
    (d / "main.py").write_text("x = 1\n")
    return d


# --- links --------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("threads", [1, 4])
def test_link_to_dev_zero_is_refused_and_the_host_survives(bundle, threads):
    for name in ("zero.py", "zero2.py", "zero3.py"):
        os.symlink("/dev/zero", bundle / name)
    res = _scan_with_deadline([bundle], threads=threads)
    for name in ("zero.py", "zero2.py", "zero3.py"):
        _refused(res, bundle / name, LINK)
    assert res[str(bundle / "main.py")] == []


def test_link_to_a_file_outside_is_refused_not_read(bundle, outside):
    os.symlink(outside, bundle / "helper.py")
    os.symlink(os.path.relpath(outside, bundle), bundle / "relative.py")
    res = warden.scan_paths([bundle])
    _refused(res, bundle / "helper.py", LINK)
    _refused(res, bundle / "relative.py", LINK)
    # The target's own finding (import os) would show that it was read.
    assert not any(f.rule == "import-forbidden" for fs in res.values() for f in fs)


def test_linked_directory_is_refused_and_not_descended(bundle, outside):
    hostile = outside.parent / "pkg"
    hostile.mkdir()
    (hostile / "__init__.py").write_text("import subprocess\n")
    (hostile / "evil.py").write_text("eval('1')\n")
    os.symlink(hostile, bundle / "pkg")
    res = warden.scan_paths([bundle])
    _refused(res, bundle / "pkg", LINK)
    assert sorted(res) == sorted([str(bundle / "main.py"), str(bundle / "pkg")])


def test_links_are_refused_whatever_their_name_or_target(bundle):
    # A name without .py can still be imported (a package) or put code beside the scanned code;
    # a dangling link can point at a place that exists only inside the sandbox.
    os.symlink("main.py", bundle / "alias")
    os.symlink("/plugin/data/later.py", bundle / "later.py")
    res = warden.scan_paths([bundle])
    _refused(res, bundle / "alias", LINK)
    _refused(res, bundle / "later.py", LINK)


def test_a_named_link_is_refused_too(bundle, outside):
    os.symlink(outside, bundle / "named.py")
    os.symlink(outside.parent, bundle / "named_dir")
    res = warden.scan_paths([bundle / "named.py", bundle / "named_dir"])
    _refused(res, bundle / "named.py", LINK)
    _refused(res, bundle / "named_dir", LINK)


def test_deep_links_below_real_directories_are_found(bundle, outside):
    deep = bundle / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "ok.py").write_text("y = 2\n")
    os.symlink(outside, deep / "hidden.py")
    res = warden.scan_paths([bundle])
    _refused(res, deep / "hidden.py", LINK)
    assert res[str(deep / "ok.py")] == []


def test_the_reader_itself_does_not_follow_links(bundle, outside):
    # A file replaced by a link between the walk and the read: the native reader opens with
    # O_NOFOLLOW and refuses it on its own.
    os.symlink(outside, bundle / "swapped.py")
    os.symlink("/dev/zero", bundle / "zero.py")
    rows = _core.scan_paths([str(bundle / "swapped.py"), str(bundle / "zero.py")],
                            Policy.default()._compiled(), 2, DEFAULT_MAX_FILE_BYTES)
    assert rows == [(False, ("link", 0)), (False, ("link", 0))]


# --- files that are not regular -----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_fifo_is_refused_promptly(bundle):
    fifo = bundle / "x.py"
    os.mkfifo(fifo)
    try:
        res = _scan_with_deadline([bundle])
        _refused(res, fifo, "it is a FIFO (named pipe); only regular files are scanned")
        res = _scan_with_deadline([fifo], threads=1)
        _refused(res, fifo, "FIFO")
    finally:
        # Should a reader be stuck in open() or read(), a writer coming and going releases it.
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_socket_is_refused(bundle):
    path = bundle / "s.py"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        res = _scan_with_deadline([bundle])
    _refused(res, path, "it is a socket; only regular files are scanned")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind, major_minor, reason", [
    (stat.S_IFCHR, (1, 3), "it is a character device"),   # /dev/null
    (stat.S_IFCHR, (1, 5), "it is a character device"),   # /dev/zero
    (stat.S_IFBLK, (7, 0), "it is a block device"),       # /dev/loop0
])
def test_device_node_is_refused(bundle, kind, major_minor, reason):
    if os.geteuid() != 0:
        pytest.skip("making a device node (mknod) needs root")
    node = bundle / "dev.py"
    try:
        os.mknod(node, 0o644 | kind, os.makedev(*major_minor))
    except PermissionError as exc:
        pytest.skip(f"mknod is not permitted here ({exc.strerror}): a user namespace or "
                    "a nodev mount")
    res = _scan_with_deadline([bundle])
    _refused(res, node, reason)
    res = _scan_with_deadline([node])
    _refused(res, node, reason)


def test_real_device_named_directly_is_refused():
    res = _scan_with_deadline(["/dev/null", "/dev/zero"])
    _refused(res, "/dev/null", "it is a character device; only regular files are scanned")
    _refused(res, "/dev/zero", "it is a character device")


def test_directory_given_to_the_reader_is_refused(bundle):
    rows = _core.scan_paths([str(bundle)], Policy.default()._compiled(), 1,
                            DEFAULT_MAX_FILE_BYTES)
    assert rows == [(False, ("directory", 0))]


# --- size cap -----------------------------------------------------------------------------------

def test_file_over_the_cap_is_refused_and_one_at_the_cap_is_scanned(bundle):
    at = bundle / "at.py"
    at.write_bytes(b"#" * 99 + b"\n")
    over = bundle / "over.py"
    over.write_bytes(b"#" * 100 + b"\n")
    res = warden.scan_paths([bundle], max_file_bytes=100)
    assert res[str(at)] == []
    msg = _refused(res, over, "larger than 100 bytes, the limit per file")
    assert "max_file_bytes" in msg and "#" not in msg.replace(str(over), "")


def test_default_cap_refuses_a_sparse_giant(bundle):
    giant = bundle / "giant.py"
    with open(giant, "wb") as f:
        f.truncate(DEFAULT_MAX_FILE_BYTES + 1)
    (bundle / "fits.py").write_text("import os\n")
    res = warden.scan_paths([bundle])
    _refused(res, giant, f"larger than {DEFAULT_MAX_FILE_BYTES} bytes")
    assert [f.rule for f in res[str(bundle / "fits.py")]] == ["import-forbidden"]
    res = warden.scan_paths([giant], max_file_bytes=DEFAULT_MAX_FILE_BYTES + 1)
    # Read and scanned under a higher cap: Python refuses NUL bytes in source, so does the scanner.
    assert [f.rule for f in res[str(giant)]] == ["syntax-error"]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "16", 2**63, None])
def test_max_file_bytes_must_be_a_positive_int(bundle, bad):
    with pytest.raises(ValueError, match="max_file_bytes"):
        warden.scan_paths([bundle], max_file_bytes=bad)


# --- memory -------------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_running_out_of_memory_is_a_per_file_error_on_every_thread(tmp_path):
    # Before, a std::bad_alloc on a worker thread called std::terminate and the host aborted.
    for name in ("big1.py", "big2.py", "big3.py"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(400 * 2**20)
    (tmp_path / "small.py").write_text("import os\n")
    script = textwrap.dedent(f"""
        import json, resource, sys
        import warden
        files = [{str(tmp_path / "big1.py")!r}, {str(tmp_path / "big2.py")!r},
                 {str(tmp_path / "small.py")!r}, {str(tmp_path / "big3.py")!r}]
        warden.scan_paths(files[2:3])  # loads the module before the limit
        with open("/proc/self/status") as f:
            vm = int(f.read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 256 * 2**20, resource.RLIM_INFINITY))
        res = warden.scan_paths(files, threads=4, max_file_bytes=2**40)
        json.dump({{p: [(f.rule, f.message) for f in fs] for p, fs in res.items()}}, sys.stdout)
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(warden.__file__)))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       check=False, timeout=100)
    assert r.returncode == 0, f"the host process died ({r.returncode}): {r.stderr[-2000:]}"
    res = json.loads(r.stdout)
    assert [rule for rule, _ in res[str(tmp_path / "small.py")]] == ["import-forbidden"]
    out_of_memory = [p for p, fs in res.items()
                     if fs and fs[0][0] == "file-unreadable" and "out of memory" in fs[0][1]]
    assert out_of_memory, f"the limit was not reached; nothing was refused: {res}"
    for p in out_of_memory:
        assert p in res[p][0][1]


# --- directories that cannot be listed ----------------------------------------------------------

def test_unlistable_directory_is_an_error_not_a_hiding_place(bundle, monkeypatch):
    locked = bundle / "locked"
    locked.mkdir()
    (locked / "evil.py").write_text("import os\n")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            # Root lists directories whatever their mode: the listing fails as it would for
            # another user.
            real_scandir = os.scandir

            def scandir(path):
                if os.fspath(path) == str(locked):
                    raise PermissionError(13, os.strerror(13), os.fspath(path))
                return real_scandir(path)

            monkeypatch.setattr(os, "scandir", scandir)
        res = warden.scan_paths([bundle])
        _refused(res, locked, "Permission denied")
        assert str(locked / "evil.py") not in res
    finally:
        locked.chmod(0o755)


# --- the CLI and the engine ---------------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(warden.__file__)))
    return subprocess.run([sys.executable, "-m", "warden", "scan", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=60)


def test_cli_exits_2_on_a_refused_file_and_names_it(bundle, outside):
    assert _cli(str(bundle)).returncode == 0
    os.symlink(outside, bundle / "helper.py")
    os.mkfifo(bundle / "pipe.py")
    r = _cli(str(bundle))
    assert r.returncode == 2, r
    assert f"{bundle / 'helper.py'}:0:0: file-unreadable" in r.stderr
    assert LINK in r.stderr and "FIFO" in r.stderr and SECRET not in r.stdout + r.stderr
    r = _cli(str(bundle), "--json")
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert data[str(bundle / "helper.py")][0]["rule"] == "file-unreadable"


def test_cli_max_file_bytes(bundle):
    (bundle / "big.py").write_bytes(b"x = 1\n" * 100)
    r = _cli(str(bundle), "--max-file-bytes", "100")
    assert r.returncode == 2 and "larger than 100 bytes" in r.stderr
    assert _cli(str(bundle), "--max-file-bytes", "1000").returncode == 0
    r = _cli(str(bundle), "--max-file-bytes", "0")
    assert r.returncode == 2 and "max_file_bytes" in r.stderr


def test_engine_refuses_a_bundle_with_a_link(tmp_path, outside):
    root = tmp_path / "plugin"
    (root / "src").mkdir(parents=True)
    (root / "plugin.yaml").write_text("name: linked\n")
    (root / "src" / "main.py").write_text("def handle(action, payload):\n    return 1\n")
    os.symlink(outside, root / "src" / "util.py")
    with warden.Engine("native") as engine, pytest.raises(warden.ScanRejected) as info:
        engine.load(root)
    [f] = info.value.findings
    assert f.rule == "file-unreadable" and f.filename == str(root / "src" / "util.py")
    assert LINK in f.message and SECRET not in str(info.value)
