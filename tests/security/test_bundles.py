"""A plugin bundle is untrusted: Engine.load and load_manifest (what `warden scan --policy`
reads) follow no link, read only regular files, never block on a FIFO, refuse an oversized
plugin.yaml by its size without reading it, refuse YAML bombs, bound the tree they copy, and
never quote in an error what lies outside the bundle."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import warden
from warden.cli.scan import load_policy
from warden.plugins import bundle, files
from warden.plugins.manifest import MAX_MANIFEST_BYTES, load_manifest

from tests.plugins.test_plugins import make_plugin, native_ok

ENTRY = """
    def handle(action, payload):
        return payload
"""
SECRET = "warden-test-secret: hunter2-do-not-print"
DEADLINE = 30.0


@pytest.fixture
def engine():
    native_ok()
    e = warden.Engine()
    yield e
    e.close()


def outcome(fn) -> BaseException | object:
    """What ``fn()`` returned or raised, from a thread: a hang fails the test, not the run."""
    got: list = []

    def run() -> None:
        try:
            got.append(fn())
        except BaseException as exc:
            got.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(DEADLINE)
    assert not t.is_alive(), f"still blocked after {DEADLINE:g}s"
    return got[0]


def with_manifest(tmp_path, name: str) -> str:
    """A plugin whose plugin.yaml the test replaces."""
    d = make_plugin(tmp_path, name, ENTRY)
    os.unlink(os.path.join(d, "plugin.yaml"))
    return d


def secret_file(tmp_path) -> str:
    path = os.path.join(tmp_path, "host-secret.yaml")
    with open(path, "w") as f:
        f.write(f"{SECRET}\nname: [unclosed\n")
    return path


# ---------------------------------------------------------------------------------------------
# plugin.yaml that is not a plain file


@pytest.mark.parametrize("target", ["/etc/passwd", "outside"])
def test_a_linked_manifest_is_refused_unread(tmp_path, engine, target):
    d = with_manifest(tmp_path, "linked")
    target = secret_file(tmp_path) if target == "outside" else target
    os.symlink(target, os.path.join(d, "plugin.yaml"))
    # load_policy: what `warden scan --policy PLUGIN_DIR` reads.
    for load in (engine.load, load_manifest, load_policy):
        err = outcome(lambda load=load: load(d))
        assert isinstance(err, warden.ManifestError), err
        assert err.field == "(file)" and "link" in err.allowed
        assert SECRET not in str(err) and "root:" not in str(err)
    assert engine.plugins == []


def test_a_fifo_manifest_never_blocks_the_load(tmp_path, engine):
    d = with_manifest(tmp_path, "fifo")
    os.mkfifo(os.path.join(d, "plugin.yaml"))
    for load in (engine.load, load_manifest):
        err = outcome(lambda load=load: load(d))
        assert isinstance(err, warden.ManifestError), err
        assert err.field == "(file)" and "FIFO" in err.allowed


def test_a_device_manifest_is_refused(tmp_path, engine):
    d = with_manifest(tmp_path, "device")
    os.mknod(os.path.join(d, "plugin.yaml"), 0o644 | 0o020000, os.makedev(1, 5))  # /dev/zero
    for load in (engine.load, load_manifest):
        err = outcome(lambda load=load: load(d))
        assert isinstance(err, warden.ManifestError), err
        assert err.field == "(file)"


def test_an_oversized_manifest_is_refused_by_its_size_unread(tmp_path, engine):
    d = with_manifest(tmp_path, "huge")
    size = 100 << 20
    with open(os.path.join(d, "plugin.yaml"), "w") as f:
        f.write("name: huge\n")
        f.truncate(size)        # sparse: the test does not write 100 MiB either
    for load in (engine.load, load_manifest):
        err = outcome(lambda load=load: load(d))
        assert isinstance(err, warden.ManifestError), err
        # The size the file has, not the bytes read: nothing past the cap was read.
        assert (err.field, err.value) == ("(document)", f"{size} bytes")
        assert err.allowed == f"at most {MAX_MANIFEST_BYTES} bytes"


def test_a_billion_laughs_manifest_is_refused(tmp_path, engine):
    d = with_manifest(tmp_path, "laughs")
    lines = ["name: laughs", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]"
              for i in range(8)]
    with open(os.path.join(d, "plugin.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    err = outcome(lambda: engine.load(d))
    assert isinstance(err, warden.ManifestError), err
    assert err.field == "(document)" and "alias" in err.allowed


def test_a_billion_laughs_policy_file_is_refused_in_bounded_time(tmp_path):
    # Policy.load reads a plugin.yaml's scan: section too; its error shows the value, which
    # spelled out in full would take 9**9 list items. In a subprocess: the hang holds the GIL.
    path = os.path.join(tmp_path, "policy.yaml")
    anchors = ", ".join(["&a [x, x, x, x, x, x, x, x, x]"]
                        + [f"&{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
                           for i in range(9)])
    with open(path, "w") as f:
        f.write(f"allow_names: [{anchors}]\nallow_modules: [*j]\n")
    code = ("import warden\n"
            f"try:\n    warden.Policy.load({path!r})\n"
            "except warden.ManifestError as e:\n    print(type(e).__name__, len(str(e)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             p for p in sys.path if p)})
    name, length = out.stdout.split()
    assert name == "ManifestError" and int(length) < 1000, out


@pytest.mark.parametrize("text, what", [
    ("name: x\nresources: {max_pids: " + "9" * 5000 + "}\n", "4300 digits"),
    ("name: x\nversion: 2020-13-45\n", "month must be in 1..12"),
])
def test_values_python_cannot_build_are_a_manifest_error(tmp_path, text, what):
    d = with_manifest(tmp_path, "values")
    with open(os.path.join(d, "plugin.yaml"), "w") as f:
        f.write(text)
    with pytest.raises(warden.ManifestError) as info:
        load_manifest(d)
    assert info.value.field == "(document)" and what in info.value.value


# ---------------------------------------------------------------------------------------------
# Sources and the tree


@pytest.mark.parametrize("kind", ["link", "node"])
def test_dev_zero_as_a_source_is_refused_never_read(tmp_path, engine, kind):
    d = make_plugin(tmp_path, f"zero{kind}", ENTRY)
    path = os.path.join(d, "src", "zero.py")
    if kind == "link":
        os.symlink("/dev/zero", path)
    else:
        os.mknod(path, 0o644 | 0o020000, os.makedev(1, 5))
    err = outcome(lambda: engine.load(d))
    assert isinstance(err, warden.ScanRejected), err
    [f] = err.findings
    assert (f.rule, f.filename) == ("file-unreadable", path)
    assert engine.plugins == []


def test_a_source_linked_to_a_host_file_is_never_quoted(tmp_path, engine):
    d = make_plugin(tmp_path, "quoted", ENTRY)
    os.symlink(secret_file(tmp_path), os.path.join(d, "src", "config.py"))
    err = outcome(lambda: engine.load(d))
    assert isinstance(err, warden.ScanRejected), err
    assert SECRET not in str(err) and "hunter2" not in repr(err.findings)


def test_a_fifo_or_device_is_never_opened_for_reading(tmp_path):
    fifo = os.path.join(tmp_path, "fifo")
    os.mkfifo(fifo)
    err = outcome(lambda: files.open_regular(fifo))
    assert isinstance(err, files.NotRegular) and err.kind == "a FIFO"
    link = os.path.join(tmp_path, "link")
    os.symlink("/dev/zero", link)
    err = outcome(lambda: files.open_regular(link))
    assert isinstance(err, files.NotRegular) and err.kind == "a symbolic link"


def test_directories_nested_too_deep_are_refused(tmp_path, engine):
    d = make_plugin(tmp_path, "deep", ENTRY)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):     # deeper than Python's recursion limit
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(fd)
        fd = -1
        err = outcome(lambda: engine.load(d))
        assert isinstance(err, warden.ManifestError), err
        assert err.field == "(plugin files)" and f"at most {bundle.MAX_DEPTH}" in err.allowed
    finally:
        if fd >= 0:
            os.close(fd)
        # shutil.rmtree, which pytest cleans its temporary directories with, recurses once
        # per level and so cannot remove this tree; rm walks it without recursing.
        subprocess.run(["rm", "-rf", "--", os.path.join(d, "a")], check=True)


def test_a_tree_of_too_many_entries_is_refused(tmp_path, engine):
    d = make_plugin(tmp_path, "wide", ENTRY)
    many = os.path.join(d, "many")
    os.mkdir(many)
    for i in range(bundle.MAX_ENTRIES + 1):
        os.mkdir(os.path.join(many, str(i)))
    err = outcome(lambda: engine.load(d))
    assert isinstance(err, warden.ManifestError), err
    assert err.value == f"more than {bundle.MAX_ENTRIES} entries"
