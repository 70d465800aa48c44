"""`warden run --allow HOST[:PORT]`: the command reaches what is allowed and nothing else."""

from __future__ import annotations

import subprocess
import sys

from tests.network.world import API, PUBLIC

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


def _base(world, *flags: str) -> list[str]:
    return ["run", "--allow", "api.test:8080", "--resolve", f"api.test={API}",
            "--egress-netns", world.path, *flags, "--", sys.executable, "-I", "-c", CODE]


def test_max_bytes_stops_the_command_at_its_budget(world):
    out = _warden(*_base(world, "--max-bytes", "100"), "http://api.test:8080/big/100000")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused"), out.stdout
    out = _warden(*_base(world, "--max-bytes", "1M"), "http://api.test:8080/cli")
    assert (out.returncode, out.stdout) == (0, "api:/cli\n"), out.stderr


HOLD = ("import socket, sys, time\n"
        "s = [socket.create_connection(('127.0.0.1', 3128)) for _ in range(3)]\n"
        "time.sleep(0.5)\n"
        "c = s[2]; c.sendall(b'CONNECT api.test:8080 HTTP/1.1\\r\\n\\r\\n')\n"
        "c.settimeout(10)\n"
        "print(repr(c.recv(100)))\n")


def test_max_connections_caps_what_the_command_holds_open(world):
    args = _base(world, "--max-connections", "2")
    args[args.index("-c") + 1] = HOLD
    out = _warden(*args)
    assert (out.returncode, out.stdout) == (0, "b''\n"), (out.stdout, out.stderr)


def test_mode_transparent_reaches_an_allowed_name_without_proxy_variables(world):
    out = _warden("run", "--allow", "web.test:80", "--resolve", f"web.test={PUBLIC}",
                  "--egress-netns", world.path, "--mode", "transparent", "--",
                  sys.executable, "-I", "-c", CODE, "http://web.test/cli")
    assert (out.returncode, out.stdout) == (0, "public:/cli\n"), out.stderr
