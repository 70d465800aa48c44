"""`warden run --allow HOST[:PORT]`: the command reaches what is allowed and nothing else."""

from __future__ import annotations

import subprocess
import sys

from tests.network.world import API

CODE = ("import sys, urllib.request as u\n"
        "try:\n    print(u.urlopen(sys.argv[1], timeout=10).read().decode())\n"
        "except Exception as e:\n    print('refused', getattr(e, 'code', e))\n")


def _warden(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_allow_flags_make_a_policy(world):
    base = ["run", "--allow", "api.test:8080", "--resolve", f"api.test={API}",
            "--resolve", f"other.test={API}", "--egress-netns", world.path, "--",
            sys.executable, "-I", "-c", CODE]
    out = _warden(*base, "http://api.test:8080/cli")
    assert (out.returncode, out.stdout) == (0, "api:/cli\n"), out.stderr
    out = _warden(*base, "http://other.test:8080/cli")
    assert (out.returncode, out.stdout) == (0, "refused 403\n"), out.stderr


def test_a_malformed_rule_is_a_usage_error():
    out = _warden("run", "--allow", "a.com:99999", "--", "true")
    assert out.returncode == 2
    assert "a port from 1 to 65535" in out.stderr
