"""The fork server's writable areas are put back after each input, and a mount below an area
(the host's Python or warden bound read-only under /tmp, when they live there) is neither
kept, counted nor removed: run in a mount namespace of the test's own, with a real bind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import warden

from tests.conftest import require

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))

SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    from warden.guest.scratch import Areas
    area, outside = sys.argv[1], sys.argv[2]
    os.makedirs(f"{area}/lead/to", exist_ok=True)
    os.makedirs(f"{area}/lead/to/mnt")
    subprocess.run(["mount", "--bind", "-o", "ro", outside, f"{area}/lead/to/mnt"], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", f"{area}/lead/to/mnt"], check=True)
    open(f"{area}/kept.txt", "w").write("setup")
    areas = Areas((area,))
    # An input: changes what setup left, adds files beside and inside the directories that
    # lead to the mount.
    open(f"{area}/kept.txt", "w").write("changed")
    open(f"{area}/lead/new.txt", "w").write("x")
    open(f"{area}/lead/to/new.txt", "w").write("y")
    areas.restore()
    found = sorted(os.path.relpath(os.path.join(d, f), area)
                   for d, dirs, files in os.walk(area) for f in dirs + files)
    print(json.dumps({"kept": sum(a.kept() for a in areas.areas), "found": found,
                      "content": open(f"{area}/kept.txt").read(),
                      "big": os.path.exists(f"{area}/lead/to/mnt/big")}))
""")


def test_a_mount_below_an_area_is_neither_kept_nor_removed(tmp_path):
    require(os.geteuid() == 0 and os.path.exists("/usr/bin/unshare"),
            "needs root and unshare(1) for a private mount namespace")
    area, outside = tmp_path / "area", tmp_path / "outside"
    area.mkdir()
    outside.mkdir()
    (outside / "big").write_bytes(b"\0" * (1 << 20))
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", SCRIPT,
         str(area), str(outside)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": PYTHON_DIR})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # The mount's 1 MiB is not the area's; what the input made is gone, the mount stays.
    assert got["kept"] == len("setup")
    assert got["content"] == "setup"
    assert got["big"] is True
    assert sorted(got["found"]) == ["kept.txt", "lead", "lead/to", "lead/to/mnt",
                                    "lead/to/mnt/big"]
    assert (outside / "big").exists()

