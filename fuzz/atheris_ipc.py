"""atheris target: the IPC frame decoder (FrameReader, decode_body, large-payload refs) and
the reading of error replies (error_from_reply).

Input: two bytes choose the reader's cap and how the rest is split into feeds; the rest is the
stream. The only exceptions allowed out are ProtocolError and PayloadTooLarge, a refused frame
must not stop the frames after it, whatever decodes must re-encode to a stable form, and any
decoded value read as a reply's error gives an exception without raising one.

    python3 fuzz/atheris_ipc.py fuzz/corpus/ipc -max_total_time=60
"""

from __future__ import annotations

import sys

import atheris
import warden_path  # noqa: F401 - sys.path first, before warden is imported

# Only the decoder under test (and the library it drives) is instrumented: the rest of the
# package is not this target's input surface, and instrumenting it only slows the loop.
with atheris.instrument_imports(include=["warden.wire.codec", "warden.wire.large",
                                          "warden.wire.replies", "msgpack"]):
    from warden.errors import PayloadTooLarge, ProtocolError
    from warden.wire.codec import INCOMPLETE, FrameReader, decode_body, encode
    from warden.wire.large import is_large_ref, resolve_large
    from warden.wire.replies import error_from_reply


def check_stable(msg: object) -> None:
    try:
        once = encode(msg, limit=0xFFFFFFFF)
    except ProtocolError:
        return  # e.g. a decoded Timestamp outside what the packer writes back
    again = encode(decode_body(once[4:]), limit=0xFFFFFFFF)
    if once != again:
        raise AssertionError(f"re-encoding is not stable: {once!r} != {again!r}")
    got = error_from_reply(msg.get("error") if isinstance(msg, dict) else msg)
    if not isinstance(got, Exception):
        raise AssertionError(f"error_from_reply gave {got!r}, not an exception")
    if is_large_ref(msg):
        try:
            resolve_large(msg, fds=(), data_dir=None)
        except ProtocolError:
            pass  # expected: no fds and no data directory on this side


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    limit = 1 + data[0] * 4
    step = 1 + data[1]
    stream = data[2:]
    reader = FrameReader(limit)
    for i in range(0, len(stream) + 1, step):
        reader.feed(stream[i:i + step])
        while True:
            try:
                msg = reader.read()
            except (ProtocolError, PayloadTooLarge):
                continue
            if msg is INCOMPLETE:
                break
            check_stable(msg)
    if reader.buffered > len(stream):
        raise AssertionError("the reader buffered more than it was fed")
    try:
        decode_body(stream)
    except ProtocolError:
        pass  # garbage is expected input


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
