"""Nothing of one tenant's sandbox reaches another's: a sandbox made after another tenant's
sandbox and plugin were made and destroyed reads every byte of its own readable memory and
finds none of their secrets. Its memory is a copy of the zygote's, so this also says the
zygote kept nothing of the earlier requests (their environment, paths and limits travel to
each sandbox on its own channel, never through the zygote)."""

from __future__ import annotations

import secrets

import pytest
import warden

from tests.plugins.test_plugins import make_plugin, native_ok

# Also in the cgroup-v2-only guest (scripts/v2-guest): there the init is placed with
# clone3(CLONE_INTO_CGROUP) by the zygote's maker.
pytestmark = pytest.mark.cgroup2guest

# Scans the readable memory of process `pid` ("self" inside a sandbox) for the pieces of the
# secrets. A piece comes as two halves and only its first is searched for: the whole piece is
# never built here, so the scan cannot find a copy of its own making.
SCAN = '''
def scan(args):
    import os
    import re

    pid, pieces = args
    if pid == "self":
        # The worker changed identity, which made it undumpable (its /proc files root's): any
        # process may make itself dumpable again, and then read its own /proc/self/mem.
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    heads = re.compile(b"|".join(re.escape(h.encode()) for h, _ in pieces))
    tails = {}
    for i, (h, t) in enumerate(pieces):
        tails.setdefault(h.encode(), []).append((t.encode(), i))
    found = set()
    with open(f"/proc/{pid}/maps") as f:
        regions = [line.split() for line in f]
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    chunk, overlap = 1 << 20, 64
    try:
        for region in regions:
            if not region[1].startswith("r"):
                continue
            start, end = (int(x, 16) for x in region[0].split("-"))
            pos = start
            while pos < end:
                try:
                    data = os.pread(fd, min(chunk, end - pos), pos)
                except OSError:
                    break  # not readable after all ([vvar] and the like)
                if not data:
                    break
                for m in heads.finditer(data):
                    after = data[m.end():m.end() + 16]
                    for tail, i in tails[m.group()]:
                        if after.startswith(tail):
                            found.add(i)
                if pos + len(data) >= end:
                    break
                pos += len(data) - overlap
    finally:
        os.close(fd)
    return sorted(found)
'''


def _pieces(secret: str) -> list[tuple[str, str]]:
    """The secret's 16-character pieces (64 random bits each), each as (first half, second
    half): a piece found anywhere is a piece of the secret, even where the rest was
    overwritten."""
    return [(secret[i:i + 8], secret[i + 8:i + 16]) for i in range(0, len(secret), 16)]


def _env(secret: str) -> dict[str, str]:
    """Tenant A's environment: the secret after 16 KB of other variables. A request that
    carried it would be longer than the requests after it, so a receive buffer reused for
    them would keep its tail, the secret (the zygote's control channel reuses one)."""
    return {**{f"NOTE_{i}": "n" * 4000 for i in range(4)}, "SECRET": secret}


@pytest.fixture
def tenant_a():
    """Tenant A's secrets, in the environment of a sandbox and of a plugin that were made,
    used and destroyed."""
    native_ok()
    box_secret = secrets.token_bytes(64).hex()
    plugin_secret = secrets.token_bytes(64).hex()
    with warden.Sandbox(env=_env(box_secret), labels={"tenant": "a"}) as box:
        assert box.call("def env(_):\n    import os\n    return os.environ['SECRET']\n") \
            == box_secret
    return box_secret, plugin_secret


def _use_plugin(root, secret: str) -> None:
    d = make_plugin(root, "tenant_a", """
        import os

        def handle(action, payload):
            return os.environ.get("SECRET")
    """, allowed_imports=["os"], env=_env(secret))
    with warden.Engine() as engine:
        assert engine.load(d, tenant="a").call("secret") == secret


def test_a_new_sandbox_holds_nothing_of_another_tenants(tmp_path, tenant_a):
    box_secret, plugin_secret = tenant_a
    _use_plugin(tmp_path, plugin_secret)
    pieces = _pieces(box_secret) + _pieces(plugin_secret)
    # A spec of its own (the label), so that this sandbox is made now, after tenant A's,
    # not taken from sandboxes made ahead.
    with warden.Sandbox(labels={"tenant": f"b-{secrets.token_hex(4)}"}) as box:
        found = box.call(SCAN, ["self", pieces], timeout=60)
    assert found == []


def test_the_zygote_holds_nothing_of_any_tenant(tmp_path, tenant_a):
    box_secret, plugin_secret = tenant_a
    _use_plugin(tmp_path, plugin_secret)
    from warden.providers.registry import get_provider

    zygote = get_provider("native")._zygote._proc.pid
    scope: dict = {}
    exec(compile(SCAN, "<scan>", "exec"), scope)  # the scanner above, run here on the zygote
    assert scope["scan"]((zygote, _pieces(box_secret) + _pieces(plugin_secret))) == []
