from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.network.world import API, PUBLIC, World, require_world

CLIENT = (Path(__file__).parent / "client.py").read_bytes()


def world_with_servers():
    """A world namespace with the test servers the network tests talk to, closed after."""
    require_world()
    w = World()
    w.api = w.server(API, 8080, "api")
    w.other = w.server(API, 8081, "other")
    w.public = w.server(PUBLIC, 80, "public")
    yield w
    w.close()


@pytest.fixture(scope="module")
def world():
    yield from world_with_servers()


def inside(sb, fn: str, *args: object) -> dict:
    """Run client.py's ``fn`` inside sandbox ``sb``; its JSON answer."""
    if "client.py" not in sb.files.list("."):
        sb.files.write("client.py", CLIENT)
    res = sb.exec([sys.executable, "-I", "/workspace/client.py", fn, *map(str, args)],
                  timeout=30)
    assert res.exit_code == 0, res.stderr.decode()[-2000:]
    return json.loads(res.stdout)
