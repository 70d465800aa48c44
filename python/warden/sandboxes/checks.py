"""Checks of what a caller passes, done before anything runs: a wrong argument is an
InvalidArgument naming the argument, the value and what is allowed, never a failure deep in
a provider, a binding or the channel."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import msgpack

from warden.errors import InvalidArgument, ProtocolError
from warden.spec.limits import Limits
from warden.spec.sandbox import LABEL_KEYS, known_network
from warden.wire import codec

__all__ = ["MAX_LIFETIME_S", "MAX_PAYLOAD_DEPTH", "MAX_TIMEOUT_S", "argv_list", "cwd_path",
           "env_map", "file_data", "file_path", "flag", "function_ref", "labels_map",
           "lifetime_s", "limits_of", "network_policy", "output_cap", "payload", "python_code",
           "reuse_key", "stdin_bytes", "timeout_s"]

# The longest timeout a call or command may ask for: a week, as for Limits.wall_time_s. Longer
# is a typo or a way to hold a sandbox forever; "no timeout of its own" is None.
MAX_TIMEOUT_S = 7 * 24 * 3600.0


def argv_list(argv: object, name: str = "argv") -> list[str]:
    """A command as a list of strings: a str alone would be split into characters."""
    if isinstance(argv, (str, bytes)):
        raise InvalidArgument(name, argv, "a list of strings, e.g. ['ls', '-l'], not one string "
                              "(for a shell line pass ['sh', '-c', line])")
    if not isinstance(argv, Sequence):
        raise InvalidArgument(name, argv, "a list of strings")
    out = []
    for item in argv:
        if not isinstance(item, (str, bytes, os.PathLike)):
            raise InvalidArgument(name, argv, f"strings only; item {item!r} is a "
                                  f"{type(item).__name__}")
        text = os.fsdecode(item)
        if "\0" in text:
            raise InvalidArgument(name, argv, "strings without NUL bytes")
        out.append(text)
    if not out or not out[0]:
        raise InvalidArgument(name, argv, "a non-empty list whose first item names the command")
    return out


def stdin_bytes(stdin: object) -> bytes | None:
    if stdin is None or isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, str):
        return stdin.encode()
    if isinstance(stdin, (bytearray, memoryview)):
        return bytes(stdin)
    raise InvalidArgument("stdin", stdin, "None, bytes or str")


def timeout_s(timeout: object, name: str = "timeout") -> float | None:
    """None (the sandbox's own wall_time_s) or a finite number of seconds above 0, at most
    MAX_TIMEOUT_S. There is no unbounded timeout: a call that could wait forever would hold
    its sandbox, and its caller, forever."""
    if timeout is None:
        return None
    # NaN fails every comparison and infinity the upper bound: the range is the whole check
    # (math.isfinite would overflow on a huge int).
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MAX_TIMEOUT_S):
        raise InvalidArgument(name, timeout, f"a finite number of seconds above 0 and at most "
                              f"{MAX_TIMEOUT_S:g} (a week); None means the sandbox's "
                              "wall_time_s")
    return float(timeout)


# The longest ttl_s/idle_timeout_s: ten years, far past any sandbox's life, and a bound that
# keeps deadline arithmetic in floats (a huge int would overflow it).
MAX_LIFETIME_S = 10 * 366 * 24 * 3600.0


def lifetime_s(value: object, name: str) -> float | None:
    """None (no such limit) or a finite number of seconds above 0 (ttl_s, idle_timeout_s)."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= MAX_LIFETIME_S):
        raise InvalidArgument(name, value, "None or a finite number of seconds above 0 (at "
                              "most ten years)")
    return float(value)


def limits_of(limits: object) -> Limits:
    if limits is None:
        return Limits()
    if not isinstance(limits, Limits):
        raise InvalidArgument("limits", limits, "a warden.Limits (e.g. Limits(memory_mb=128)) "
                              "or None")
    return limits


def cwd_path(cwd: object) -> str | None:
    if cwd is None:
        return None
    if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd:
        raise InvalidArgument("cwd", cwd, "an absolute path inside the sandbox, e.g. "
                              "'/workspace/src'")
    return cwd


def callback(fn: object, name: str) -> Callable[[bytes], object] | None:
    if fn is not None and not callable(fn):
        raise InvalidArgument(name, fn, "a callable taking one bytes argument, or None")
    return fn


def env_map(env: object) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidArgument("env", env, "a mapping of variable names to strings")
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidArgument("env", env, f"variable names that are non-empty strings "
                                  f"without '=' or NUL; {key!r} is not one")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidArgument("env", env, f"string values without NUL bytes; {key} is "
                                  f"{type(value).__name__}")
    return dict(env)


def output_cap(cap: object, name: str = "max_output_bytes") -> int | None:
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= 1 << 40:
        raise InvalidArgument(name, cap, "a whole number of bytes from 0 up, or None")
    return cap


network_policy = known_network


def labels_map(labels: object, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Labels a caller gives a sandbox: only the keys listing and reuse go by (and ``extra``),
    since a provider that keeps labels outside the process (docker) keeps only those."""
    if labels is None:
        return {}
    keys = LABEL_KEYS + extra
    if not isinstance(labels, Mapping):
        raise InvalidArgument("labels", labels, f"a mapping of {', '.join(keys)} to strings")
    for key, value in labels.items():
        if key not in keys:
            raise InvalidArgument("labels", labels, f"the keys {', '.join(keys)}; {key!r} is "
                                  "not one")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidArgument("labels", labels, f"string values without NUL bytes; {key} is "
                                  f"{type(value).__name__} {value!r}")
    return dict(labels)


def reuse_key(key: object) -> str | None:
    if key is None or (isinstance(key, str) and key and "\0" not in key):
        return key
    raise InvalidArgument("reuse_key", key, "None or a non-empty string")


def flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(name, value, "True or False")
    return value


def file_path(path: object, name: str = "path") -> str:
    """A path inside the workspace, as text; whether it stays inside is the provider's
    check (PathEscapeError), made against the workspace itself."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str) or not path or "\0" in path:
        raise InvalidArgument(name, path, "a non-empty path relative to the workspace, e.g. "
                              "'data/in.csv'")
    return path


def file_data(data: object) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidArgument("data", data, "bytes or str")


def python_code(code: object) -> str:
    if not isinstance(code, str) or "\0" in code:
        raise InvalidArgument("code", code, "Python source as a str without NUL bytes")
    return code


def function_ref(fn: object) -> tuple[bool, str]:
    """(is_source, text) for Sandbox.call's first argument: a function's source, or the name
    of one defined by an earlier call."""
    if isinstance(fn, str) and "\0" not in fn:
        if "\n" in fn or fn.lstrip().startswith(("def ", "async def ", "import ", "from ")):
            return True, fn
        if fn.isidentifier():
            return False, fn
    raise InvalidArgument("fn_source_or_name", fn, "a function's source ('def f(x): ...') or "
                          "the name of one defined before")


# What the worker protocol carries, checked before a request is sent. A value the encoder
# refuses would fail there anyway, but one it takes and the other side cannot decode (a tuple
# as a dict key, nesting past the decoder's depth, an ext type) would end the sandbox.
MAX_PAYLOAD_DEPTH = 1023  # msgpack's decoder takes 1024 levels; the request's map is one
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_PLAIN = frozenset({bytes, float, bool, type(None), bytearray, memoryview})
_CARRIED = ("None, bool, int of at most 64 bits, float, str, bytes, and lists, tuples and "
            "dicts of them (dict keys: str, bytes, int, float, bool or None), nested at most "
            f"{MAX_PAYLOAD_DEPTH} deep")


def payload(value: object, name: str = "payload") -> object:
    """``value`` if the worker protocol can carry it, else InvalidArgument naming the first
    offending part (``payload['rows'][3] is a set``).

    A plain value is seen at once; anything else is encoded and decoded as the protocol does,
    in C: about twice the cost of the encoding the request makes anyway, where a walk in
    Python took 10 to 25 times it (and a look at a container's item types, to skip the
    codec, cost as much as the codec). Only a refused value is walked, to say which part was
    at fault."""
    if _plain(value):
        return value
    try:
        frame = codec.encode([value], codec.MAX_FRAME_LIMIT)  # [ ]: the request's map is a level
        codec.decode_body(memoryview(frame)[4:])          # after the u32 length
    except ProtocolError as exc:
        bad = _unsendable(value)
        if bad is None:
            raise InvalidArgument(name, value, f"what the worker protocol carries: {_CARRIED} "
                                  f"({exc})") from None
        where, why = "".join(bad[0]), bad[1]
        if len(where) > 100:
            where = where[:60] + "..." + where[-30:]
        raise InvalidArgument(name, value, f"{name}{where} is {why}; the worker protocol "
                              f"carries {_CARRIED}") from None
    return value


def _plain(value: object) -> bool:
    """A value sent as it is, seen without the codec. (A str that is not ASCII may hold a
    lone surrogate, which UTF-8 cannot carry: the codec sees to that.)"""
    t = type(value)
    if t in _PLAIN:
        return True
    if isinstance(value, str):
        return t is str and value.isascii()
    return isinstance(value, int) and t is int and _INT_MIN <= value <= _INT_MAX


def _unsendable(value: object) -> tuple[list[str], str] | None:
    """None if ``value`` can be sent, else (the path to its first offending part, what that
    is). Depth first with a stack of its own: the payload's depth is not Python's to bear."""
    path: list[str] = []
    frames: list = []  # iterators of (label, child), one per open container
    while True:
        items = _children(value)
        if isinstance(items, str):
            return path, items
        if items is not None:
            if len(frames) >= MAX_PAYLOAD_DEPTH:
                return path, f"nested deeper than {MAX_PAYLOAD_DEPTH}"
            frames.append(items)
            path.append("")
        while frames:
            step = next(frames[-1], None)
            if step is not None:
                path[-1], value = step
                break
            frames.pop()
            path.pop()
        else:
            return None


def _children(value: object):
    """None for a value sent as it is; an iterator of (label, child) for a container; a str
    saying why the value cannot be sent. Subclasses (an IntEnum, an OrderedDict, a
    namedtuple) are sent as their base type, as the encoder does."""
    if isinstance(value, msgpack.ExtType):
        return "a msgpack ExtType, which the worker protocol refuses"
    if isinstance(value, int):
        return _int_problem(value)
    if isinstance(value, str):
        return _str_problem(value)
    if isinstance(value, (bytes, bytearray, memoryview, float)) or value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ((f"[{i}]", item) for i, item in enumerate(value))
    if isinstance(value, dict):
        return _map_children(value)
    return _kind(value)


def _kind(value: object) -> str:
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def _int_problem(value: int) -> str | None:
    return None if _INT_MIN <= value <= _INT_MAX else "an int beyond 64 bits"


def _str_problem(value: str) -> str | None:
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        return f"a str with a lone surrogate at index {exc.start}, which UTF-8 cannot carry"
    return None


def _map_children(mapping: dict):
    for key in mapping:
        if isinstance(key, int):
            why = _int_problem(key)
        elif isinstance(key, str):
            why = _str_problem(key)
        elif isinstance(key, (bytes, float)) or key is None:
            why = None
        else:
            why = f"{_kind(key)}, not a str, bytes, int, float, bool or None"
        if why is not None:
            # The key itself is named: a dict key cannot be reached by indexing.
            return f"{why} (the key {_show_key(key)})"
    return ((f"[{_show_key(k)}]", v) for k, v in mapping.items())


def _show_key(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."
