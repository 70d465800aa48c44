"""Bad input to Engine.load, Plugin.call and Plugin.call_batch is an InvalidArgument naming
the argument, raised before any worker is asked: the same workers serve on, none replaced."""

from __future__ import annotations

import pytest
import warden
from warden import InvalidArgument
from warden.sandboxes import checks

from tests.plugins.test_plugins import COUNTER, make_plugin, native_ok
from tests.sandboxes.test_checks import deep


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    native_ok()
    engine = warden.Engine()
    d = make_plugin(tmp_path_factory.mktemp("args"), "args", COUNTER,
                    pool={"min_workers": 1, "max_workers": 1})
    p = engine.load(d)
    yield p
    engine.close()


BAD = [
    ("payload", lambda p: p.call("ping", 1 << 64)),
    ("payload", lambda p: p.call("ping", {1, 2})),
    ("payload", lambda p: p.call("ping", object())),
    ("payload", lambda p: p.call("ping", {(1, 2): "tuple key"})),
    ("payload", lambda p: p.call("ping", deep(checks.MAX_PAYLOAD_DEPTH + 1))),
    ("items", lambda p: p.call_batch("ping", [1, {2}])),
    ("items", lambda p: p.call_batch("ping", "abc")),
    ("items", lambda p: p.call_batch("ping", 5)),
    ("action", lambda p: p.call("", 1)),
    ("action", lambda p: p.call(None, 1)),
    ("tenant", lambda p: p.call("ping", 1, tenant=5)),
]


@pytest.mark.parametrize("argument,call", BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_calls_are_refused_before_a_worker_is_asked(plugin, argument, call):
    workers = {h.id for h in plugin.workers()}
    count = plugin.call("count")
    with pytest.raises(InvalidArgument) as info:
        call(plugin)
    assert info.value.argument == argument
    # The same worker, which saw no request in between.
    assert plugin.call("count") == count + 1
    assert {h.id for h in plugin.workers()} == workers


def test_the_payload_error_names_the_part(plugin):
    with pytest.raises(InvalidArgument) as info:
        plugin.call("ping", {"rows": [1, {"when": {3}}]})
    assert "payload['rows'][1]['when'] is a set" in str(info.value)


def test_good_payloads_of_every_kind_pass(plugin):
    assert plugin.call_batch("ping", [None, 1, "a", b"b", [1], {"k": 1.5}, (1 << 64) - 1]) \
        == ["pong"] * 7


@pytest.mark.parametrize("argument,kwargs", [
    ("labels", {"labels": {"tenant": 5}}),
    ("labels", {"labels": {"colour": "red"}}),
    ("labels", {"labels": "tenant=a"}),
    ("tenant", {"tenant": 5}),
])
def test_load_refuses_bad_labels_and_tenant(tmp_path, argument, kwargs):
    native_ok()
    d = make_plugin(tmp_path, "lbl", COUNTER)
    with warden.Engine() as engine:
        with pytest.raises(InvalidArgument) as info:
            engine.load(d, **kwargs)
        assert info.value.argument == argument
        assert engine.plugins == []


def test_load_refuses_a_path_that_is_not_one():
    with warden.Engine() as engine, pytest.raises(InvalidArgument) as info:
        engine.load(42)
    assert info.value.argument == "path"
