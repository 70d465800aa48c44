"""Large payloads beside a frame: sealed memfds and files in the data area."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from warden import PathEscapeError, PayloadTooLarge, ProtocolError, TimeoutExceeded
from warden.wire.large import (
    feed_pipe,
    make_memfd,
    memfd_ref,
    put_large,
    read_large_file,
    read_memfd,
    read_pipe,
    resolve_large,
    write_pipe,
)


def test_memfd_round_trip_is_sealed_and_mapped():
    fd = make_memfd(b"abc" * 1000)
    with pytest.raises(PermissionError):
        os.write(fd, b"x")  # sealed: the sender cannot change it under the receiver
    view = read_memfd(os.dup(fd))
    assert bytes(view) == b"abc" * 1000
    os.close(fd)


def test_unsealed_or_foreign_fds_are_refused(tmp_path):
    fd = os.memfd_create("x")
    os.write(fd, b"data")
    with pytest.raises(ProtocolError, match="not sealed"):
        read_memfd(fd)
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with pytest.raises(ProtocolError, match="not a sealable memfd"):
        read_memfd(os.open(path, os.O_RDONLY))
    with pytest.raises(PayloadTooLarge):
        read_memfd(make_memfd(b"x" * 100), limit=10)


def test_memfd_ref_resolves_bytes_and_values():
    ref, fd = memfd_ref({"rows": list(range(10))})
    ref2, fd2 = memfd_ref(b"raw", index=1)
    used: set[int] = set()
    assert resolve_large(ref, fds=[fd, fd2], used=used) == {"rows": list(range(10))}
    assert bytes(resolve_large(ref2, fds=[fd, fd2], used=used)) == b"raw"
    assert used == {0, 1}
    with pytest.raises(ProtocolError):
        resolve_large({"$fd": 3}, fds=[])
    assert resolve_large({"$fd": 0, "other": 1}, fds=[]) == {"$fd": 0, "other": 1}


def test_files_in_the_data_area(tmp_path):
    ref = put_large(b"B" * 5000, tmp_path)
    assert set(ref) == {"$file"}
    assert resolve_large(ref, data_dir=tmp_path) == b"B" * 5000
    ref = put_large({"a": [1, 2]}, tmp_path)
    assert resolve_large(ref, data_dir=tmp_path) == {"a": [1, 2]}
    with pytest.raises(PayloadTooLarge):
        read_large_file(tmp_path, ref["$file"], limit=3)


@pytest.mark.parametrize("relpath", ["/etc/passwd", "../x", "a/../../x", "", "a//b", "./a"])
def test_file_refs_cannot_leave_the_data_area(tmp_path, relpath):
    with pytest.raises(PathEscapeError):
        resolve_large({"$file": relpath}, data_dir=tmp_path)


def test_file_refs_do_not_follow_symlinks_or_open_fifos(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "link").symlink_to(secret)
    (data / "dirlink").symlink_to(tmp_path)
    os.mkfifo(data / "fifo")
    with pytest.raises(PathEscapeError):
        resolve_large({"$file": "link"}, data_dir=data)
    with pytest.raises(PathEscapeError):
        resolve_large({"$file": "dirlink/secret"}, data_dir=data)
    with pytest.raises(PathEscapeError, match="not a regular file"):
        resolve_large({"$file": "fifo"}, data_dir=data)


def _piped(data: bytes) -> int:
    r, w = write_pipe(data)
    threading.Thread(target=feed_pipe, args=(w, data)).start()
    return r


def test_pipe_payload_round_trip_and_refusals():
    data = os.urandom(3 << 20)
    assert read_pipe(_piped(data), len(data)) == data
    with pytest.raises(PayloadTooLarge):
        read_pipe(_piped(b"x" * 100), 100, limit=10)
    with pytest.raises(ProtocolError, match="ended after 3"):
        read_pipe(_piped(b"abc"), 10)
    with pytest.raises(ProtocolError, match="not a pipe"):
        read_pipe(make_memfd(b"abc"), 3)
    with pytest.raises(ProtocolError, match="whole number"):
        read_pipe(_piped(b"abc"), "3")


def test_a_pipe_payload_that_stalls_ends_at_the_deadline():
    import time

    r, w = write_pipe(b"")
    os.write(w, b"ab")
    try:
        with pytest.raises(TimeoutExceeded):
            read_pipe(r, 10, deadline=time.monotonic() + 0.2)
    finally:
        os.close(w)


def test_a_value_piped_with_the_msgpack_codec():
    import msgpack

    body = msgpack.packb({"rows": [1, 2, 3]})
    got = resolve_large({"$pipe": 0, "size": len(body), "$codec": "msgpack"},
                        fds=[_piped(body)], budget=1 << 20)
    assert got == {"rows": [1, 2, 3]}


@settings(max_examples=60, deadline=None)
@given(announced=st.integers(0, 300_000), sent=st.integers(0, 300_000),
       limit=st.integers(0, 400_000))
def test_a_pipe_payload_is_exactly_what_was_announced_or_refused(announced, sent, limit):
    """Whatever a sender announces and sends: the reader returns exactly the announced bytes,
    or refuses (over the limit, or ended short), and never reads past what it announced."""
    data = bytes(range(256)) * (sent // 256 + 1)
    r, w = write_pipe(b"")
    t = threading.Thread(target=feed_pipe, args=(w, data[:sent]))
    t.start()
    try:
        if announced > limit:
            with pytest.raises(PayloadTooLarge):
                read_pipe(r, announced, limit)
        elif sent < announced:
            with pytest.raises(ProtocolError, match=f"ended after {sent}"):
                read_pipe(r, announced, limit)
        else:
            assert read_pipe(r, announced, limit) == data[:announced]
    finally:
        t.join(10)
