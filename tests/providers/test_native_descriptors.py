"""A process that runs out of descriptors while making native sandboxes gets
HostResourceExhausted naming the limit, never an internal error, and the sandbox that could
not be made leaves nothing behind: no cgroup, namespace, socket, descriptor, workspace or host
identity."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import warden

from tests.plugins.test_plugins import native_ok

# The warden these tests import (the tree's or the installed one), for their subprocesses.
PYTHONPATH = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))

# Runs in its own process, whose descriptor table it shrinks to 64. Each round holds a few
# more descriptors of its own (``pad``), so that descriptors run out at different steps.
SCRIPT = r"""
import glob, json, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
import warden
from warden.host import cgroups, identity
from warden.providers.native import prepare

# 32 open files inside each sandbox: the default 256 is over this process's hard limit, which
# a sandbox cannot raise (that is a set-up error of its own, step 'rlimit').
LIMITS = warden.Limits(open_files=32)
PARENTS = sorted(set(cgroups.driver().describe()["parents"].values()))

def leaves():
    names = set()
    for parent in PARENTS:
        names |= {os.path.basename(p) for p in glob.glob(f"{parent}/warden-{os.getpid()}-*/sb-*")}
    return sorted(names)

def fds():
    return sorted(int(f) for f in os.listdir("/proc/self/fd"))

def settle():
    prepare.preparer().drain()  # cgroups and namespaces are removed in the background

warden.Sandbox(limits=LIMITS).close()  # the zygote and the cgroup parents, made once
settle()
before = {"fds": fds(), "leaves": leaves(), "ws": glob.glob(os.environ["TMPDIR"] + "/*")}
rounds = []
for pad in range(4):
    extra = [os.dup(0) for _ in range(pad)]
    boxes, error = [], None
    try:
        while len(boxes) < 200:
            boxes.append(warden.Sandbox(limits=LIMITS, readonly=True))
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc),
                 "resource": getattr(exc, "resource", None), "limit": getattr(exc, "limit", None),
                 "step": getattr(exc, "step", None)}
    settle()
    alive = {"made": len(boxes), "leaves": len(leaves()),
             "ws": len(glob.glob(os.environ["WARDEN_STATE_DIR"] + "/areas/*/ws-*"))}
    # The ones made still work, files and all.
    boxes[0].files.write("f", b"x")
    served = boxes[0].exec(["cat", "f"]).stdout == b"x"
    for b in boxes:
        b.close()
    for f in extra:
        os.close(f)
    settle()
    rounds.append({"error": error, "alive": alive, "served": served, "fds": fds(),
                   "leaves": leaves(),
                   "ws": glob.glob(os.environ["TMPDIR"] + "/*")
                   + glob.glob(os.environ["WARDEN_STATE_DIR"] + "/areas/*/ws-*"),
                   "host_ids": sorted(identity.pool().held())})
print(json.dumps({"pid": os.getpid(), "before": before, "rounds": rounds, "parents": PARENTS}))
"""


def test_running_out_of_descriptors_is_clear_and_leaves_nothing(tmp_path):
    native_ok()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "TMPDIR": str(tmp_path / "tmp"),
           "WARDEN_STATE_DIR": str(tmp_path / "state")}
    (tmp_path / "tmp").mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    before = report["before"]
    assert before["leaves"] == [] and before["ws"] == []
    for r in report["rounds"]:
        err = r["error"]
        assert err is not None and err["type"] == "HostResourceExhausted", err
        assert (err["resource"], err["limit"]) == ("RLIMIT_NOFILE", 64)
        assert "ulimit -n" in err["message"] and "hard limit 64" in err["message"]
        assert "IndexError" not in err["message"]
        # While the others lived, the one that failed had left no cgroup and no workspace.
        alive = r["alive"]
        assert alive["made"] > 0
        assert alive["leaves"] == alive["made"] and alive["ws"] == alive["made"], r
        assert r["served"]
        # And once they were closed, the process was as before: no descriptor more.
        assert r["fds"] == before["fds"], r
        assert r["leaves"] == [] and r["ws"] == [] and r["host_ids"] == [], r
    # When it exited, its cgroup parents and its area went with it.
    assert os.listdir(tmp_path / "state" / "areas") == []
    for parent in report["parents"]:
        assert glob.glob(f"{parent}/warden-{report['pid']}-*") == []
