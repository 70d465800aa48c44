"""Host-side areas: what warden keeps on the host for a sandbox lives in its private state
directory (mode 0700, warden's user alone, not under the shared /tmp); the sandbox reads its
own area through an idmapped read-only mount and cannot write it; no host path of that area
(or of the caller's directories) shows in the sandbox's mountinfo; host facts in /proc are
masked; and the workspace root cannot be removed."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import tempfile

import pytest
import warden
from warden import _core
from warden.host import environ, state
from warden.providers.native import runner

NOBODY = 65534


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _workspaces() -> set[str]:
    top = state.areas().path
    return {os.path.join(top, n) for n in os.listdir(top) if n.startswith("ws-")}


def _unreadable_to_other_users(path: str) -> None:
    """Another host user (nobody) can neither list nor read ``path``."""
    for argv in (["ls", path], ["cat", os.path.join(path, "secret.txt")]):
        got = subprocess.run(argv, user=NOBODY, group=NOBODY, capture_output=True, check=False)
        assert got.returncode != 0 and b"Permission denied" in got.stderr, argv


def _mountinfo_clean(text: str, *paths: str) -> None:
    """No host path of warden's state, nor any of ``paths``, in a sandbox's mountinfo."""
    base = state.state_dir()
    for p in (base, os.path.realpath(base), state.areas().path, *paths):
        assert p not in text, p
    # Nor the state directory's path relative to its own file system (a bind's root field).
    assert "/areas/" not in text and "warden/areas" not in text


def _workspace_holding(name: str, content: bytes) -> str:
    """The host directory of the read-only workspace whose ``name`` holds ``content`` (one
    made ahead for an earlier test may be there too)."""
    found = []
    for ws in _workspaces():
        try:
            with open(os.path.join(ws, name), "rb") as f:
                if f.read() == content:
                    found.append(ws)
        except FileNotFoundError:
            pass
    (ws,) = found
    return ws


def test_readonly_workspace_is_private_on_the_host_and_readable_inside():
    with warden.Sandbox(readonly=True) as sb:
        sb.files.write("secret.txt", "only for this sandbox")
        sb.files.write("d/e/deep.txt", "deep")
        ws = _workspace_holding("secret.txt", b"only for this sandbox")
        # The host side: mode 0700 all the way up from the workspace (whose own mode lets the
        # sandbox read it where it cannot be idmapped), owned by warden's user, not in /tmp.
        assert _mode(ws) == 0o755 and os.lstat(ws).st_uid == os.geteuid()
        for p in (os.path.dirname(ws), os.path.dirname(os.path.dirname(ws)),
                  state.state_dir()):
            assert _mode(p) == 0o700, p
            assert os.lstat(p).st_uid == os.geteuid(), p
        assert not ws.startswith(os.path.realpath(tempfile.gettempdir()) + "/")
        _unreadable_to_other_users(ws)
        # The sandbox reads it (its own files, through the idmapped mount) ...
        r = sb.exec(["sh", "-c", "cat /workspace/secret.txt /workspace/d/e/deep.txt; stat -c '%u %a' /workspace"])
        assert r.exit_code == 0, r.stderr
        # Idmapped (Linux >= 6.3 for tmpfs): the sandbox's own; else root's, read as "other".
        assert r.stdout in (b"only for this sandboxdeep1000 755\n",
                            b"only for this sandboxdeep65534 755\n"), r.stdout
        # ... and cannot change anything in it.
        for line in ("echo x > /workspace/new", "echo x >> /workspace/secret.txt",
                     "rm /workspace/secret.txt", "chmod 777 /workspace", "mkdir /workspace/x",
                     "touch /workspace/d/e/deep.txt"):
            r = sb.exec(["sh", "-c", line])
            assert r.exit_code != 0 and b"Read-only file system" in r.stderr, line
        assert sb.files.read("secret.txt") == b"only for this sandbox"
        r = sb.exec(["cat", "/proc/self/mountinfo"])
        _mountinfo_clean(r.stdout.decode(), ws)
    assert not os.path.exists(ws)


def test_plugin_from_a_private_directory_loads_and_runs(tmp_path):
    """A plugin directory only its owner can read (0700, as mkdtemp makes it, with 0600
    files) loads, and its workers run what was scanned; they cannot write it, and nothing of
    the caller's or warden's host paths shows in their mountinfo."""
    root = tmp_path / "plugin"
    (root / "src").mkdir(parents=True)
    (root / "plugin.yaml").write_text("name: private\nversion: 1.0.0\nentry_point: src/main.py\n")
    (root / "src" / "main.py").write_text(

        "def handle(action, payload):\n"
        "    if action == 'info':\n"
        "        return [open('/proc/self/mountinfo').read(), open('/proc/cmdline').read()]\n"
        "    try:\n"
        "        open('/plugin/src/main.py', 'a').close()\n"
        "    except OSError as exc:\n"
        "        return exc.errno\n"
        "    return 0\n")
    for p, mode in ((root / "src" / "main.py", 0o600), (root / "plugin.yaml", 0o600),
                    (root / "src", 0o700), (root, 0o700), (tmp_path, 0o700)):
        os.chmod(p, mode)
    engine = warden.Engine()
    try:
        plugin = engine.load(root)
        mountinfo, cmdline = plugin.call("info")
        assert plugin.call("write") == errno.EROFS
    finally:
        engine.close()
    _mountinfo_clean(mountinfo, str(tmp_path), os.path.realpath(tmp_path))
    assert cmdline == ""
    plugin_line = next(line for line in mountinfo.splitlines() if line.split()[4] == "/plugin")
    assert "idmapped" in plugin_line and " ro," in plugin_line


@pytest.mark.parametrize("where", ["run", "sandbox"])
def test_host_facts_in_proc_are_masked(where):
    argv = ["sh", "-c", "for f in /proc/cmdline /proc/kallsyms /proc/sys/kernel/random/boot_id;"
            " do printf '%s:' $f; wc -c < $f; done"]
    if where == "run":
        r = warden.run(argv)
    else:
        with warden.Sandbox() as sb:
            r = sb.exec(argv)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == [b"/proc/cmdline:0", b"/proc/kallsyms:0",
                                b"/proc/sys/kernel/random/boot_id:0"]


@pytest.mark.parametrize("readonly", [False, True])
def test_the_workspace_root_cannot_be_removed(readonly):
    with warden.Sandbox(readonly=readonly) as sb:
        sb.files.write("x/keep.txt", "kept")
        for path in (".", "./", "x/..", "x/../.", ".//"):
            with pytest.raises(warden.PathEscapeError):
                sb.files.remove(path)
        with pytest.raises(warden.InvalidArgument):
            sb.files.remove("")
        assert sb.files.read("x/keep.txt") == b"kept"
        assert sb.files.list(".") == ["x"]
        r = sb.exec(["cat", "/workspace/x/keep.txt"])
        assert r.stdout == b"kept"


def test_an_area_that_cannot_be_idmapped_fails_closed(host_id):
    """The parent's idmapped clone is a step like any other: a missing area, or one on a file
    system without idmapped mounts (sysfs), stops the sandbox with (idmap, errno)."""
    for source, err in (("/no/such/area", errno.ENOENT), ("/sys/kernel", errno.EINVAL)):
        cfg = runner.base_config(warden.Limits())
        cfg.update(host_id.config())
        cfg.update(area_binds=[(source, "/area")])
        with pytest.raises(warden.SandboxSetupError) as exc:
            _core.PreparedSandbox(cfg)
        assert (exc.value.step, exc.value.errno) == ("idmap", err), source


def test_where_an_area_cannot_be_idmapped_warden_binds_it_unmapped_and_read_only(host_id):
    """warden's own areas (area_unmapped_ok): on a file system without idmapped mounts (sysfs
    here, as tmpfs before Linux 6.3) the same read-only clone, without the mapping."""
    cfg = runner.base_config(warden.Limits())
    cfg.update(host_id.config())
    cfg.update(area_binds=[("/sys/kernel", "/area")], area_unmapped_ok=True)
    box = _core.PreparedSandbox(cfg)
    try:
        out = box.start(["/bin/sh", "-c", "ls /area; touch /area/x"],
                        environ.sandbox_env(None), ["/bin/sh"])
    finally:
        box.close()
    assert b"mm\n" in out["stdout"], out  # the area is there and listed
    assert out["wait_status"] != 0 and b"Read-only file system" in out["stderr"], out


def test_a_readonly_workspace_is_bounded_by_the_sandbox_s_disk_limit():
    """The tool layer writes a read-only workspace from the host: what a tenant writes there
    is bounded by its own sandbox's disk limit, not by the host's memory (warden's area is a
    tmpfs shared by every sandbox of the process), and the sandbox's df shows its own
    workspace alone, not how much the other sandboxes' workspaces hold."""
    with warden.Sandbox(readonly=True) as other:
        other.files.write("other.bin", b"o" * (6 << 20))
        with warden.Sandbox(readonly=True, limits=warden.Limits(disk_mb=8)) as sb:
            sb.files.write("fits.bin", b"x" * (4 << 20))
            # Its own 4 MiB of 8, nothing of the other sandbox's 6 MiB.
            r = sb.exec(["df", "-k", "--output=size,used", "/workspace"])
            size_k, used_k = map(int, r.stdout.split()[2:4])
            assert size_k == 8 << 10 and 4 << 10 <= used_k < 5 << 10, r.stdout
            with pytest.raises(warden.DiskQuotaExceeded):
                sb.files.write("over.bin", b"x" * (8 << 20))
            ws = _workspace_holding("fits.bin", b"x" * (4 << 20))
            used = sum(os.lstat(os.path.join(ws, n)).st_blocks * 512 for n in os.listdir(ws))
            assert used <= 8 << 20
            sb.files.remove("over.bin")  # a partial write may be left: the tenant's own
            sb.files.write("small.bin", b"fits")
            assert sb.files.read("small.bin") == b"fits"
