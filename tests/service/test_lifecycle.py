"""Sandboxes live in the server's process: a graceful shutdown closes every one of them, and a
server killed outright leaves none running either."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest
import warden

from tests.conftest import require
from tests.service.conftest import _free_port

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))


def _running(marker: str) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    return True
        except OSError:
            continue
    return False


def _gone(marker: str, within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while _running(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _start_work(c: httpx.Client, marker: str) -> str:
    r = c.post("/v1/sandboxes", json={"limits": {"wall_time_s": 600}})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = c.post(f"/v1/sandboxes/{sid}/exec",
               json={"argv": ["sh", "-c", f"sleep {marker} > /dev/null 2>&1 &"]})
    assert r.json()["exit_code"] == 0
    return sid


def _wait_running(marker: str) -> bool:
    deadline = time.monotonic() + 10
    while not _running(marker):
        assert time.monotonic() < deadline, "the background process never started"
        time.sleep(0.05)
    return True


def test_graceful_shutdown_closes_every_sandbox(tmp_path):
    require(os.geteuid() == 0, "the service tests run real sandboxes (root for cgroups)")
    from warden.service.keys import KeyStore
    from warden.service.server import make_app

    _, key = KeyStore(tmp_path).create("acme")
    app = make_app(tmp_path, None)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    markers = [f"{secrets.randbelow(10**6) + 10**6}.{i}" for i in range(2)]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        for m in markers:
            _start_work(c, m)
            _wait_running(m)
    server.should_exit = True
    thread.join(60)
    assert not thread.is_alive()
    assert app.state.registry.list("acme", {}) == []
    assert all(_gone(m, 0) for m in markers)


def test_a_killed_server_leaves_no_sandbox_running(tmp_path):
    require(os.geteuid() == 0, "the service tests run real sandboxes (root for cgroups)")
    from warden.service.keys import KeyStore

    _, key = KeyStore(tmp_path).create("acme")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    proc = subprocess.Popen([sys.executable, "-m", "warden", "serve", "--port", str(port),
                             "--state-dir", str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = f"{secrets.randbelow(10**6) + 10**6}.7"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    c.get("/healthz")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
            _start_work(c, marker)
            _wait_running(marker)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert _gone(marker), "a sandbox's process outlived its killed server"
