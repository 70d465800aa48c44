"""The native provider makes the next sandbox of a spec when one is destroyed: what create()
hands out is still new (no call has reached it), only ever to an equal spec, and nothing made
ahead outlives the provider."""

from __future__ import annotations

import os
import time

import pytest
from warden.providers.base import SandboxSpec
from warden.providers.native import NativeProvider, prepare
from warden.providers.native.state import state_of

from tests.conftest import require

COUNTER = """
calls = 0


def handle(action, payload):
    global calls
    calls += 1
    return {"calls": calls, "pid": __import__("os").getpid(), "tenant": payload}
"""


def plugin_root(tmp_path) -> str:
    require(os.geteuid() == 0, "the native provider needs root here")
    root = tmp_path / "plugin"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text(COUNTER)
    os.chmod(tmp_path, 0o755)
    return str(root)


@pytest.fixture
def native(tmp_path):
    root = plugin_root(tmp_path)
    p = NativeProvider()
    yield p, root
    p.close()


def spec_for(root: str, tenant: str) -> SandboxSpec:
    return SandboxSpec(labels={"tenant": tenant}, code_dir=root, mount_at="/plugin",
                       cwd="/plugin", entry_point="/plugin/src/main.py")


def made_ahead(key_part) -> list:
    prep = prepare.preparer()
    with prep._cond:
        return [m for k, q in prep._ready.items() if k[1] == key_part for m in q]


def wait_for(cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def call(p, h, payload):
    return p.call(h, "call", {"action": "count", "payload": payload})


def test_the_sandbox_made_ahead_is_new_and_handed_out_next(native):
    p, root = native
    spec = spec_for(root, "acme")
    from warden.providers.native.state import spec_key as _spec_key

    key = (p._token, _spec_key(spec))
    first = p.create(spec)
    assert call(p, first, "acme")["calls"] == 1
    assert call(p, first, "acme")["calls"] == 2
    p.destroy(first)
    wait_for(lambda: len(made_ahead(key[1])) == 1)
    waiting = made_ahead(key[1])[0].handle
    assert waiting not in p.list()  # not anyone's until handed out
    second = p.create(spec)
    assert second is waiting
    assert second in p.list(labels={"tenant": "acme"})
    got = call(p, second, "acme")
    assert got["calls"] == 1  # a fresh interpreter: nothing of the first sandbox's calls
    assert state_of(second).pid != state_of(first).pid
    p.destroy(second)


def test_a_sandbox_made_ahead_goes_only_to_an_equal_spec(native):
    p, root = native
    a, b = spec_for(root, "a"), spec_for(root, "b")
    from warden.providers.native.state import spec_key as _spec_key

    p.destroy(p.create(a))
    wait_for(lambda: len(made_ahead(_spec_key(a))) == 1)
    ready_for_a = made_ahead(_spec_key(a))[0].handle
    hb = p.create(b)
    assert hb is not ready_for_a and hb.labels == {"tenant": "b"}
    assert [m.handle for m in made_ahead(_spec_key(a))] == [ready_for_a]
    p.destroy(hb)


def test_a_worker_killed_while_waiting_is_never_handed_out(native):
    p, root = native
    spec = spec_for(root, "k")
    from warden.providers.native.state import spec_key as _spec_key

    p.destroy(p.create(spec))
    wait_for(lambda: len(made_ahead(_spec_key(spec))) == 1)
    doomed = made_ahead(_spec_key(spec))[0].handle
    os.kill(state_of(doomed).pid, 9)
    wait_for(lambda: p._exited(doomed))
    h = p.create(spec)
    assert h is not doomed
    assert call(p, h, "k")["calls"] == 1
    p.destroy(h)


def test_close_leaves_nothing_made_ahead(tmp_path):
    root = plugin_root(tmp_path)
    p = NativeProvider()
    spec = spec_for(root, "c")
    from warden.providers.native.state import spec_key as _spec_key

    p.destroy(p.create(spec))
    wait_for(lambda: len(made_ahead(_spec_key(spec))) == 1)
    left = made_ahead(_spec_key(spec))[0].handle
    p.close()
    assert made_ahead(_spec_key(spec)) == []
    assert state_of(left).destroyed and p._exited(left)
    prepare.preparer().drain()  # the cgroup's removal runs in the background
    assert not os.path.exists(state_of(left).cgroup.path)


def test_many_sandboxes_leave_no_descriptor_or_namespace_behind(tmp_path):
    # The mount namespace of each sandbox is held until its worker is gone, then closed in
    # the background; after close() and drain() nothing of them may remain open here.
    root = plugin_root(tmp_path)

    def fds() -> list[str]:
        out = []
        for f in os.listdir("/proc/self/fd"):
            try:
                out.append(os.readlink(f"/proc/self/fd/{f}"))
            except OSError:
                pass  # listdir's own descriptor
        return sorted(out)

    prepare.preparer().drain()
    before = fds()
    p = NativeProvider()
    spec = spec_for(root, "leak")
    for _ in range(20):
        h = p.create(spec)
        assert call(p, h, "leak")["calls"] == 1
        p.destroy(h)
    p.close()
    prepare.preparer().drain()
    after = fds()
    assert not [f for f in after if f.startswith("mnt:[")]
    assert after == before
