"""Bad input from a caller is an InvalidArgument naming the argument, the value and what is
allowed, raised before anything runs: first the checkers alone, then every public entry of
warden.Sandbox against a real sandbox, which must still serve, with its files intact."""

from __future__ import annotations

import collections
import enum
import math
import pathlib

import msgpack
import pytest
import warden
from hypothesis import given
from hypothesis import strategies as st
from warden import InvalidArgument
from warden.sandboxes import checks
from warden.wire import codec

from tests.plugins.test_plugins import native_ok


def deep(levels: int) -> list:
    """A list nested ``levels`` deep, [[...[]...]]."""
    top = inner = []
    for _ in range(levels - 1):
        inner.append([])
        inner = inner[0]
    return top


# -- the checkers ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["ls -l", b"ls", [], [""], ["ls", 3], ["a\0b"], 7, None])
def test_argv_must_be_a_non_empty_list_of_strings(bad):
    with pytest.raises(InvalidArgument) as info:
        checks.argv_list(bad)
    assert (info.value.argument, info.value.value) == ("argv", bad)


def test_argv_accepts_paths_and_tuples():
    assert checks.argv_list(("ls", pathlib.Path("/tmp"), b"-l")) == ["ls", "/tmp", "-l"]


@pytest.mark.parametrize("bad", [-1, 0, float("inf"), float("nan"), 1e9, 10 ** 400,
                                 checks.MAX_TIMEOUT_S * 1.001, True, "10"])
def test_timeout_is_none_or_finite_seconds_up_to_the_maximum(bad):
    with pytest.raises(InvalidArgument) as info:
        checks.timeout_s(bad)
    assert info.value.argument == "timeout"
    assert "None means the sandbox's wall_time_s" in info.value.allowed


def test_timeout_bounds():
    assert checks.timeout_s(None) is None
    assert checks.timeout_s(checks.MAX_TIMEOUT_S) == checks.MAX_TIMEOUT_S
    assert checks.timeout_s(1) == 1.0


@pytest.mark.parametrize("bad", [123, 1.5, ["a"], object()])
def test_stdin_is_bytes_or_text(bad):
    with pytest.raises(InvalidArgument) as info:
        checks.stdin_bytes(bad)
    assert info.value.argument == "stdin"


@pytest.mark.parametrize("argument,call", [
    ("limits", lambda: checks.limits_of({"memory_mb": 64})),
    ("env", lambda: checks.env_map({"A": 1})),
    ("env", lambda: checks.env_map({"A=B": "x"})),
    ("labels", lambda: checks.labels_map({"tenant": 5})),
    ("labels", lambda: checks.labels_map({"colour": "red"})),
    ("labels", lambda: checks.labels_map(["tenant"])),
    ("reuse_key", lambda: checks.reuse_key("")),
    ("reuse_key", lambda: checks.reuse_key(5)),
    ("readonly", lambda: checks.flag("yes", "readonly")),
    ("network", lambda: checks.network_policy("host")),
    ("network", lambda: checks.network_policy(None)),
    ("path", lambda: checks.file_path(5)),
    ("path", lambda: checks.file_path("")),
    ("path", lambda: checks.file_path("a\0b")),
    ("data", lambda: checks.file_data(5)),
    ("code", lambda: checks.python_code(b"print(1)")),
    ("fn_source_or_name", lambda: checks.function_ref("not a name")),
    ("fn_source_or_name", lambda: checks.function_ref(len)),
    ("max_output_bytes", lambda: checks.output_cap(-1)),
    ("cwd", lambda: checks.cwd_path("relative")),
])
def test_each_checker_names_its_argument(argument, call):
    with pytest.raises(InvalidArgument) as info:
        call()
    assert info.value.argument == argument
    assert isinstance(info.value, ValueError)  # as callers that catch ValueError expect
    assert str(info.value).startswith(f"{argument}=")


def test_function_ref_tells_source_from_name():
    assert checks.function_ref("total") == (False, "total")
    assert checks.function_ref("def f(x):\n    return x\n")[0] is True
    assert checks.function_ref("async def f(x): return x")[0] is True


class Colour(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize("good", [
    None, True, 0, -(1 << 63), (1 << 64) - 1, 1.5, "text", "héllo", b"\xff", bytearray(b"ab"),
    [], (), {}, [1, "a", None], {"a": [1, {"b": (2, 3)}], 2: None, b"k": 1.0, None: 0},
    Colour.RED, Point(1, 2), collections.OrderedDict(a=[1]), deep(checks.MAX_PAYLOAD_DEPTH),
])
def test_payloads_msgpack_carries_pass(good):
    assert checks.payload(good) is good


@pytest.mark.parametrize("bad,where,what", [
    (1 << 64, "payload", "an int beyond 64 bits"),
    (-(1 << 63) - 1, "payload", "an int beyond 64 bits"),
    ({1, 2}, "payload", "a set"),
    (object(), "payload", "an object"),
    ({"rows": [1, 2, {"a": frozenset()}]}, "payload['rows'][2]['a']", "a frozenset"),
    ([1, [2, 1 << 70]], "payload[1][1]", "an int beyond 64 bits"),
    ({(1, 2): 3}, "payload", "a tuple, not a str"),
    ({Point(1, 2): 3}, "payload", "a Point, not a str"),
    ({1 << 65: 3}, "payload", "an int beyond 64 bits (the key"),
    ("a\udc80", "payload", "a str with a lone surrogate at index 1"),
    (msgpack.ExtType(1, b"x"), "payload", "a msgpack ExtType"),
    (deep(checks.MAX_PAYLOAD_DEPTH + 1), "payload[0][0]", "nested deeper than 1023"),
])
def test_payloads_it_cannot_carry_name_the_part(bad, where, what):
    with pytest.raises(InvalidArgument) as info:
        checks.payload(bad)
    assert info.value.argument == "payload"
    assert f"{where}" in info.value.allowed and what in info.value.allowed


def test_a_payload_that_holds_itself_is_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(InvalidArgument, match="nested deeper than"):
        checks.payload(loop)


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 9), inner, max_size=4),
    max_leaves=20)


@given(plain)
def test_what_the_check_passes_the_protocol_carries(value):
    checks.payload(value)
    frame = codec.encode({"id": 1, "op": "call_fn", "payload": value})
    assert codec.decode_body(frame[4:])["payload"] == value


@given(plain, st.sampled_from([set(), 1 << 64, object(), "\udc80"]))
def test_one_bad_part_anywhere_is_found(value, bad):
    with pytest.raises(InvalidArgument) as info:
        checks.payload([value, {"k": [bad]}])
    assert "payload[1]['k'][0] is " in info.value.allowed


def test_floats_that_are_not_finite_are_still_payloads():
    assert checks.payload([math.inf, -math.inf]) == [math.inf, -math.inf]


def test_a_huge_value_is_shown_cut_short():
    with pytest.raises(InvalidArgument) as info:
        checks.payload([b"x" * 100_000, {1, 2}])
    assert len(str(info.value)) < 600


# -- warden.Sandbox: every entry, against a real sandbox ---------------------------------------


@pytest.fixture(scope="module")
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=20), labels={"purpose": "checks"}) as box:
        box.files.write("keep.txt", "kept")
        box.call("def echo(x):\n    return x\n", None)
        yield box


BAD_CALLS = [
    ("argv", lambda sb: sb.exec("ls -l")),
    ("argv", lambda sb: sb.exec([])),
    ("argv", lambda sb: sb.exec(["echo", 5])),
    ("stdin", lambda sb: sb.exec(["cat"], stdin=123)),
    ("timeout", lambda sb: sb.exec(["true"], timeout=-1)),
    ("timeout", lambda sb: sb.exec(["true"], timeout=0)),
    ("timeout", lambda sb: sb.exec(["true"], timeout=float("inf"))),
    ("timeout", lambda sb: sb.exec(["true"], timeout=1e9)),
    ("timeout", lambda sb: sb.exec(["true"], timeout=float("nan"))),
    ("code", lambda sb: sb.run_python(b"print(1)")),
    ("timeout", lambda sb: sb.run_python("print(1)", timeout=float("inf"))),
    ("payload", lambda sb: sb.call("echo", 1 << 64)),
    ("payload", lambda sb: sb.call("echo", {1, 2})),
    ("payload", lambda sb: sb.call("echo", object())),
    ("payload", lambda sb: sb.call("echo", {(1, 2): 3})),  # would end the worker if sent
    ("payload", lambda sb: sb.call("echo", deep(checks.MAX_PAYLOAD_DEPTH + 1))),
    ("payload", lambda sb: sb.call("echo", msgpack.ExtType(5, b""))),
    ("timeout", lambda sb: sb.call("echo", 1, timeout=float("inf"))),
    ("timeout", lambda sb: sb.call("echo", 1, timeout=1e9)),
    ("fn_source_or_name", lambda sb: sb.call(42, 1)),
    ("fn_source_or_name", lambda sb: sb.call("no such name", 1)),
    ("path", lambda sb: sb.files.read(5)),
    ("path", lambda sb: sb.files.read(None)),
    ("path", lambda sb: sb.files.write(["keep.txt"], b"x")),
    ("data", lambda sb: sb.files.write("keep.txt", 5)),
    ("path", lambda sb: sb.files.list(3)),
    ("path", lambda sb: sb.files.remove("")),
]


@pytest.mark.parametrize("argument,call", BAD_CALLS,
                         ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD_CALLS)])
def test_bad_input_is_refused_before_anything_runs(sb, argument, call):
    with pytest.raises(InvalidArgument) as info:
        call(sb)
    assert info.value.argument == argument
    # Nothing reached the sandbox: it serves, its files and functions are as they were.
    assert sb.files.read("keep.txt") == b"kept"
    assert sb.call("echo", [1, {"a": b"b"}]) == [1, {"a": b"b"}]
    assert sb.exec(["cat", "keep.txt"]).stdout == b"kept"


def test_the_longest_timeout_and_deepest_payload_work(sb):
    r = sb.exec(["echo", "hi"], timeout=checks.MAX_TIMEOUT_S)
    assert (r.exit_code, r.stdout) == (0, b"hi\n")
    assert sb.run_python("print(2)", timeout=checks.MAX_TIMEOUT_S).stdout == b"2\n"
    assert sb.call("echo", 7, timeout=checks.MAX_TIMEOUT_S) == 7
    back = sb.call("echo", deep(checks.MAX_PAYLOAD_DEPTH))
    levels = 1
    while back:
        back, levels = back[0], levels + 1
    assert levels == checks.MAX_PAYLOAD_DEPTH


def test_files_take_path_objects(sb):
    sb.files.write(pathlib.Path("p.txt"), bytearray(b"pp"))
    assert sb.files.read(pathlib.Path("p.txt")) == b"pp"
    sb.files.remove(pathlib.Path("p.txt"))


@pytest.mark.parametrize("argument,kwargs", [
    ("limits", {"limits": {"memory_mb": 64}}),
    ("memory_mb", {"limits": None, "_limits": {"memory_mb": 1}}),
    ("network", {"network": "host"}),
    ("labels", {"labels": {"tenant": 5}}),
    ("labels", {"labels": {"colour": "red"}}),
    ("env", {"env": {"A": 1}}),
    ("readonly", {"readonly": "yes"}),
    ("provider", {"provider": "nope"}),
    ("provider", {"provider": 3}),
    ("reuse_key", {"reuse_key": ""}),
])
def test_sandbox_constructor_refuses_before_making_one(argument, kwargs):
    native_ok()
    from warden.providers.registry import get_provider

    native = get_provider("native")
    before = {h.id for h in native.list()}
    with pytest.raises(InvalidArgument) as info:
        fields = kwargs.pop("_limits", None)
        if fields is not None:
            kwargs["limits"] = warden.Limits(**fields)
        warden.Sandbox(**kwargs)
    assert info.value.argument == argument
    assert {h.id for h in native.list()} == before


def test_an_unknown_provider_names_the_known_ones():
    with pytest.raises(InvalidArgument) as info:
        warden.Sandbox(provider="nope")
    assert "'native'" in info.value.allowed and "'docker'" in info.value.allowed
