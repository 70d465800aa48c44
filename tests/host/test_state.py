"""warden's state directory: private (0700, warden's user), never a link or another user's
directory; each process's area is swept once its owner is gone."""

from __future__ import annotations

import os
import stat

import pytest
from warden.errors import SandboxSetupError
from warden.host import owner, state


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_state_dir_is_made_private(tmp_path, monkeypatch):
    where = tmp_path / "state"
    monkeypatch.setenv("WARDEN_STATE_DIR", str(where))
    assert state.state_dir() == str(where)
    assert _mode(where) == 0o700 and os.lstat(where).st_uid == os.geteuid()
    # A looser mode of warden's own directory is tightened, not trusted.
    os.chmod(where, 0o755)
    state.state_dir()
    assert _mode(where) == 0o700


def test_a_link_or_another_users_directory_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv("WARDEN_STATE_DIR", str(link))
    with pytest.raises(SandboxSetupError) as exc:
        state.state_dir()
    assert exc.value.step == "state-dir"
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        monkeypatch.setenv("WARDEN_STATE_DIR", str(theirs))
        with pytest.raises(SandboxSetupError) as exc:
            state.state_dir()
        assert exc.value.step == "state-dir"


def test_areas_of_dead_processes_are_swept(tmp_path, monkeypatch):
    monkeypatch.setenv("WARDEN_STATE_DIR", str(tmp_path))
    top = tmp_path / "areas"
    top.mkdir(mode=0o700)
    me = f"{os.getpid()}-{owner.proc_starttime(os.getpid())}"
    # A pid that is alive with another start time is another process: its area is stale.
    stale = [f"{os.getpid()}-1", "4194304-5"]
    for name in [me, *stale, "not-an-owner"]:
        (top / name / "ws-x").mkdir(parents=True)
        (top / name / "ws-x" / "f").write_text("x")
    removed = state.sweep()
    assert sorted(removed) == sorted(str(top / n) for n in stale)
    assert sorted(os.listdir(top)) == sorted([me, "not-an-owner"])


def test_a_process_area_is_private_and_goes_at_close(tmp_path):
    areas = state.Areas(str(tmp_path))
    try:
        assert _mode(tmp_path / "areas") == 0o700 and _mode(areas.path) == 0o700
        made = areas.make("ws-")
        assert _mode(made) == 0o700 and areas.holds(made)
        assert not areas.holds(str(tmp_path)) and not areas.holds(areas.path + "x/y")
        if os.geteuid() == 0:
            # A tmpfs of its own: the sandboxes' mounts of it show paths relative to it.
            assert areas.mounted
            assert os.lstat(areas.path).st_dev != os.lstat(tmp_path).st_dev
    finally:
        areas.close()
    assert not os.path.exists(areas.path)
