"""Replies and errors as fields: what the worker writes for an exception, and what the host
makes of any error map a worker may send (hostile ones included)."""

from __future__ import annotations

import errno
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warden.errors import (
    PathEscapeError,
    PayloadTooLarge,
    PluginError,
    ProtocolError,
    SandboxFileError,
    SandboxFileNotFound,
    WardenError,
    sandbox_file_error,
)
from warden.wire.codec import decode_body, encode
from warden.wire.replies import (
    error_fields,
    error_from_reply,
    error_reply,
    ok_reply,
    parse_bytes,
    parse_entries,
    parse_error,
    parse_exec,
)


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as the worker catches it."""
    try:
        raise exc
    except BaseException as caught:  # any exception, as the worker sees it
        return caught


def over_the_wire(reply: dict) -> dict:
    """The reply as the host decodes it: only msgpack types survive."""
    return decode_body(encode(reply)[4:])


def test_ok_reply():
    assert ok_reply(1, [1]) == {"id": 1, "ok": True, "result": [1]}


def test_the_plugins_exception_becomes_a_plugin_error_with_its_traceback():
    reply = over_the_wire(error_reply(5, raised(KeyError("k"))))
    assert reply["error"]["origin"] == "plugin" and reply["error"]["kind"] == "KeyError"
    err = error_from_reply(reply["error"])
    assert type(err) is PluginError
    assert err.type == "KeyError" and "raise exc" in err.traceback
    assert err.errno is None and err.path is None and err.resource is None


def test_an_oserror_of_the_plugin_carries_its_errno_and_filename():
    exc = raised(FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/in.csv"))
    fields = error_fields(exc, origin="plugin")
    assert (fields["errno"], fields["path"]) == (errno.ENOENT, "/data/in.csv")
    err = error_from_reply(over_the_wire(error_reply(1, exc))["error"])
    assert type(err) is PluginError  # the plugin's own error: not a file op of warden's
    assert (err.type, err.errno, err.path) == ("FileNotFoundError", errno.ENOENT, "/data/in.csv")


def test_a_descriptor_is_never_reported_as_a_path():
    exc = raised(OSError(errno.EBADF, "Bad file descriptor"))
    exc.filename = 7
    assert error_fields(exc, origin="plugin")["path"] is None


def test_a_file_op_refused_by_the_worker_comes_back_as_the_sandbox_file_error():
    exc = raised(sandbox_file_error(errno.ENOENT, "dir/a.txt", op="read"))
    reply = over_the_wire(error_reply(2, exc))
    assert reply["error"]["origin"] == "warden" and reply["error"]["traceback"] == ""
    err = error_from_reply(reply["error"])
    assert isinstance(err, SandboxFileNotFound) and isinstance(err, FileNotFoundError)
    assert isinstance(err, WardenError)
    assert (err.errno, err.filename) == (errno.ENOENT, "dir/a.txt")


def test_the_errno_not_the_workers_text_decides_a_file_errors_class_and_strerror():
    fields = error_fields(raised(sandbox_file_error(errno.EISDIR, "d")), origin="warden")
    fields.update(kind="SandboxFileNotFound", message="[Errno 2] No such file")  # a lie
    err = error_from_reply(fields)
    assert isinstance(err, IsADirectoryError) and err.strerror == "Is a directory"
    assert "No such file" not in str(err)


def test_a_path_refusal_keeps_the_path():
    exc = raised(PathEscapeError("path 'a/l/x' leads through a link", path="a/l/x"))
    err = error_from_reply(over_the_wire(error_reply(3, exc))["error"])
    assert type(err) is PathEscapeError and err.path == "a/l/x" and "a/l/x" in str(err)


@pytest.mark.parametrize(("worker_direction", "what"), [("outgoing", "the reply"),
                                                       ("incoming", "the request")])
def test_a_frame_the_worker_refused_is_payload_too_large_of_direction_reply(worker_direction,
                                                                           what):
    exc = PayloadTooLarge(10, 5, direction=worker_direction)
    err = error_from_reply(over_the_wire(error_reply(4, exc))["error"])
    assert type(err) is PayloadTooLarge
    assert (err.size, err.limit, err.direction) == (10, 5, "reply")
    assert str(err).startswith(what)


def test_a_bad_request_is_a_protocol_error():
    err = error_from_reply(error_reply(4, ProtocolError("unknown op 'x'"))["error"])
    assert type(err) is ProtocolError and "unknown op" in str(err)


def test_a_thread_that_could_not_start_is_marked_by_where_it_failed(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading, "_start_new_thread", refuse)
    try:
        threading.Thread(target=lambda: None).start()
    except RuntimeError as exc:
        fields = error_fields(exc, origin="plugin")
    assert fields["resource"] == "thread"
    assert error_from_reply(fields).resource == "thread"
    # The same text raised elsewhere is not a thread start, nor is another refusal of
    # Thread.start: the text decides nothing.
    assert error_fields(raised(RuntimeError("can't start new thread")),
                        origin="plugin")["resource"] is None
    monkeypatch.undo()
    twice = threading.Thread(target=lambda: None)
    twice.start()
    twice.join()
    try:
        twice.start()
    except RuntimeError as exc:
        assert error_fields(exc, origin="plugin")["resource"] is None


def test_a_file_error_is_also_the_builtin_oserror():
    err = sandbox_file_error(errno.ENOENT, "x.txt", op="read", sandbox="native-1-2")
    assert isinstance(err, SandboxFileError) and isinstance(err, OSError)
    with pytest.raises(FileNotFoundError):
        raise err
    assert str(err).startswith("cannot read 'x.txt' in sandbox native-1-2: No such file")
    assert type(sandbox_file_error(errno.EIO, "x")) is SandboxFileError


@pytest.mark.parametrize("error", [
    "nope", None, [], {}, {"kind": "X"}, {"kind": "X", "origin": "elsewhere"},
    {"kind": "", "origin": "plugin"}, {"kind": 3, "origin": "plugin"},
    {"kind": "X", "origin": "plugin", "errno": "28"},
    {"kind": "X", "origin": "plugin", "errno": True},
    {"kind": "X", "origin": "plugin", "path": "p" * 5000},
    {"kind": "K" * 500, "origin": "plugin"},
])
def test_malformed_error_maps_are_protocol_errors(error):
    assert isinstance(error_from_reply(error), ProtocolError)


def test_long_text_from_a_worker_is_cut():
    f = parse_error({"kind": "X", "origin": "plugin", "message": "m" * (1 << 20)})
    assert len(f.message) < 70_000


field_values = st.none() | st.booleans() | st.integers() | st.text(max_size=30) | \
    st.binary(max_size=10) | st.lists(st.integers(), max_size=2)
error_maps = st.dictionaries(
    st.sampled_from(["kind", "origin", "message", "traceback", "errno", "path", "limit", "size",
                     "direction", "resource", "type", "other"]),
    field_values | st.sampled_from(["plugin", "warden", "zygote", "PayloadTooLarge",
                                    "SandboxFileNotFound", "PathEscapeError", "ProtocolError"]),
    max_size=10)


@given(error_maps | field_values)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_error_map_gives_an_exception_and_never_raises(error):
    got = error_from_reply(error)
    assert isinstance(got, Exception)
    str(got)  # and its message can be made


# -- tool results from a hostile worker are checked, field by field ---------------------------


_GOOD_EXEC = {"exit_code": 0, "signal": None, "stdout": b"o", "stderr": b"", "timed_out": False,
              "disk_full": False, "stdout_truncated": False, "stderr_truncated": False,
              "stdout_dropped": 0, "stderr_dropped": 0, "max_rss_bytes": 4096}


def test_parse_exec_takes_a_well_formed_result():
    r = parse_exec(_GOOD_EXEC)
    assert (r.exit_code, r.signal, r.stdout, r.timed_out) == (0, None, b"o", False)


@pytest.mark.parametrize("bad", [
    [], "x", None,
    {**_GOOD_EXEC, "stdout": "text"},
    {**_GOOD_EXEC, "exit_code": True},
    {**_GOOD_EXEC, "exit_code": None},                 # neither exit code nor signal
    {**_GOOD_EXEC, "signal": 9},                       # both
    {**_GOOD_EXEC, "exit_code": None, "signal": 999},  # no such signal
    {**_GOOD_EXEC, "timed_out": 1},
    {k: v for k, v in _GOOD_EXEC.items() if k != "stderr"},
    {k: v for k, v in _GOOD_EXEC.items() if k != "stdout_dropped"},
    {**_GOOD_EXEC, "stdout_dropped": -1},
    {**_GOOD_EXEC, "stderr_dropped": True},
    {**_GOOD_EXEC, "max_rss_bytes": 1 << 70},
    {**_GOOD_EXEC, "stdout_dropped": 5},               # dropped, yet not truncated
    {**_GOOD_EXEC, "stderr_truncated": True},          # truncated, yet nothing dropped
    {**_GOOD_EXEC, "stdout": b"o" * 11},               # over the cap the host asked for
])
def test_parse_exec_refuses_what_a_worker_cannot_mean(bad):
    with pytest.raises(ProtocolError, match="broken or hostile"):
        parse_exec(bad, 10)


def test_parse_exec_takes_the_counts_of_what_was_dropped():
    r = parse_exec({**_GOOD_EXEC, "stdout": b"o" * 10, "stdout_truncated": True,
                    "stdout_dropped": 990}, 10)
    assert (len(r.stdout), r.stdout_dropped, r.stderr_dropped, r.max_rss_bytes) == (
        10, 990, 0, 4096)


def test_exec_output_cap_leaves_room_for_both_streams_and_the_envelope():
    from warden.wire.codec import DEFAULT_MAX_FRAME
    from warden.wire.replies import EXEC_ENVELOPE, exec_output_cap

    fit = exec_output_cap(DEFAULT_MAX_FRAME)
    assert 2 * fit + EXEC_ENVELOPE <= DEFAULT_MAX_FRAME
    assert exec_output_cap(DEFAULT_MAX_FRAME, 1 << 40) == fit
    assert exec_output_cap(DEFAULT_MAX_FRAME, 5) == 5
    assert exec_output_cap(1000, None) == 0


@pytest.mark.parametrize("bad", [
    {"name": "a"}, [{"name": "../x", "type": "file", "size": 1}],
    [{"name": "a/b", "type": "file", "size": 1}], [{"name": "a", "type": "file", "size": "1"}],
    [7],
])
def test_parse_entries_refuses_malformed_listings(bad):
    with pytest.raises(ProtocolError):
        parse_entries(bad)
    assert parse_entries([{"name": "a", "type": "file", "size": 3}])[0]["name"] == "a"


def test_parse_bytes_refuses_other_types():
    with pytest.raises(ProtocolError):
        parse_bytes({"x": 1}, "the file's content")
    assert parse_bytes(b"ok", "the file's content") == b"ok"
