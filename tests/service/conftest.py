"""A real warden serve for the service tests: the app under uvicorn on 127.0.0.1 on a free
port, in a thread of the test process (so that caplog sees its log), with keys of a few
tenants and scopes and a config with tight quotas for tenant "tight"."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import pytest

from tests.conftest import require

pytest.importorskip("starlette", reason="the server extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")

CONFIG = """\
server:
  max_json_bytes: 65536
defaults:
  sandboxes: 6
  max_memory_mb: 512
tenants:
  tight:
    sandboxes: 1
    memory_mb: 300
    max_memory_mb: 256
    requests_per_s: 1000
  slow:
    requests_per_s: 1
"""


@dataclass
class Service:
    url: str
    app: object
    keys: dict[str, str]     # name -> key text
    state_dir: str

    def client(self, name: str | None = None, headers: dict | None = None) -> httpx.Client:
        sent = {"Authorization": f"Bearer {self.keys[name]}"} if name else {}
        return httpx.Client(base_url=self.url, headers={**sent, **(headers or {})},
                            timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require(os.geteuid() == 0, "the service tests run real sandboxes (root for cgroups)")
    from warden.service.keys import KeyStore
    from warden.service.server import make_app

    state = tmp_path_factory.mktemp("serve-state")
    (state / "config.yaml").write_text(CONFIG)
    store = KeyStore(state)
    keys = {}
    for name, tenant, scope in (("admin", "acme", "admin"), ("acme", "acme", "sandboxes"),
                                ("read", "acme", "read"), ("other", "globex", "sandboxes"),
                                ("tight", "tight", "sandboxes"), ("slow", "slow", "sandboxes"),
                                ("revoked", "acme", "sandboxes"),
                                ("expired", "acme", "sandboxes")):
        info, keys[name] = store.create(tenant, scope, 1 if name == "expired" else None)
        if name == "revoked":
            store.revoke(info.id)
    with store._db() as db:  # an expired key, without waiting a day
        db.execute("UPDATE keys SET expires = 1 WHERE tenant = 'acme' AND expires IS NOT NULL")
    app = make_app(state, state / "config.yaml")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield Service(f"http://127.0.0.1:{port}", app, keys, str(state))
    server.should_exit = True
    thread.join(60)
