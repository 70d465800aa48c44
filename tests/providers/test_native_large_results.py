"""A large result that a sandboxed handler leaves as a file in its spec's data area
(``{"$file": relpath}``) is read by the native provider by itself: the caller passes no path."""

from __future__ import annotations

import os

import pytest
from warden.errors import ProtocolError
from warden.providers.base import SandboxSpec
from warden.providers.native import NativeProvider

from tests.conftest import require

EXPORTER = """
def handle(action, payload):
    with open("/plugin/data/" + action, "wb") as f:
        f.write(payload * 100_000)
    return {"$file": action}
"""


@pytest.fixture
def native(tmp_path):
    require(os.geteuid() == 0, "the native provider needs root here")
    root = tmp_path / "plugin"
    (root / "src").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "src" / "main.py").write_text(EXPORTER)
    os.chmod(tmp_path, 0o755)
    p = NativeProvider()
    yield p, str(root)
    p.close()


def test_a_file_result_is_read_from_the_spec_s_data_area(native):
    p, root = native
    h = p.create(SandboxSpec(code_dir=root, mount_at="/plugin", cwd="/plugin",
                             entry_point="/plugin/src/main.py", writable=("/plugin/data",),
                             data_dir="/plugin/data"))
    try:
        assert p.call(h, "call", {"action": "out.bin", "payload": b"ab"}) == b"ab" * 100_000
    finally:
        p.destroy(h)


def test_a_sandbox_without_a_data_area_refuses_a_file_result(native):
    p, _ = native
    h = p.create(SandboxSpec())
    try:
        with pytest.raises(ProtocolError, match="no data directory"):
            p.call(h, "call_fn", {"source": "def f(_):\n    return {'$file': 'x'}\n",
                                  "payload": 0})
        assert p.call(h, "ping", {})["pong"] is True
    finally:
        p.destroy(h)
