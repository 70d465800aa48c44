"""``@warden.testing.isolated``: run a test's body per example in a fork server, so that a
crash, a timeout or running out of memory is a test failure with its verdict, which a property
testing library (hypothesis) shrinks like any other failure.

    @given(st.binary())
    @warden.testing.isolated(limits=warden.Limits(wall_time_s=1, memory_mb=64))
    def test_parse(data):
        parse(data)

The decorator goes below ``@given``. The test's module is run once, as the fork server's
setup, inside the sandbox (its directory bound read-only at /setup and on sys.path; a module
level function only, no pytest fixtures); each call sends the example's arguments (as
warden.guest.carry carries them) and runs the undecorated body in a fresh child. A failure
raises IsolatedFailure, of a subclass made once per bucket and raised from one place, so that
the same bug fails the same way every time (no Flaky from differing exceptions) and distinct
bugs are told apart. ``setup`` is extra source run after the module (e.g. to warm a cache).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

from warden.errors import InvalidArgument
from warden.sandboxes import checks
from warden.spec.limits import Limits
from warden.testing.forkserver import ForkServer
from warden.testing.verdict import Verdict

__all__ = ["IsolatedFailure", "isolated", "original_of"]

_MARK = "__warden_isolated__"


class IsolatedFailure(AssertionError):
    """A test body that failed in its fork server: ``verdict`` says how."""

    verdict: Verdict

    def __init__(self, verdict: Verdict) -> None:
        text = verdict.describe()
        if verdict.exception is not None and verdict.exception.traceback:
            text += "\n\n" + verdict.exception.traceback.rstrip()
        elif verdict.stderr:
            text += "\n\n" + verdict.stderr.decode("utf-8", "replace")[-4000:].rstrip()
        super().__init__(text)
        self.verdict = verdict


_kinds: dict[str, type[IsolatedFailure]] = {}
_kinds_lock = threading.Lock()


def _failure_type(verdict: Verdict) -> type[IsolatedFailure]:
    key = f"{verdict.outcome}:{verdict.bucket}"
    with _kinds_lock:
        kind = _kinds.get(key)
        if kind is None:
            name = f"Isolated{verdict.outcome.capitalize()}_{verdict.bucket}"
            kind = type(name, (IsolatedFailure,), {"__module__": __name__})
            _kinds[key] = kind
        return kind


def original_of(obj: object) -> Callable[..., Any] | None:
    """The undecorated body behind ``obj`` (a test as @isolated, and maybe @given, left it)."""
    seen = 0
    while obj is not None and seen < 16:
        found = getattr(obj, _MARK, None)
        if found is not None:
            return found
        inner = getattr(getattr(obj, "hypothesis", None), "inner_test", None)
        obj = inner if inner is not None else getattr(obj, "__wrapped__", None)
        seen += 1
    return None


def _setup_source(fn: Callable[..., Any], extra: str | None) -> tuple[str, str]:
    """(the fork server's setup source, the test file's directory). The module's source
    travels inside the setup (the sandbox's user may not be able to read the host's file); its
    directory is bound too, so that its sibling modules import where they can be read."""
    path = inspect.getsourcefile(fn)
    if path is None or not os.path.isfile(path) or "." in fn.__qualname__:
        raise InvalidArgument("isolated", fn, "a module-level function defined in a .py file")
    path = os.path.abspath(path)
    with open(path, encoding="utf-8") as f:
        module_source = f.read()
    inside = f"/setup/{os.path.basename(path)}"
    source = "\n".join([
        "import linecache as _linecache",
        "from warden.testing.decorator import original_of as _original_of",
        f"_src = {module_source!r}",
        f"_linecache.cache[{inside!r}] = (len(_src), None, _src.splitlines(True), {inside!r})",
        f"_ns = {{'__name__': '__warden_isolated__', '__file__': {inside!r}}}",
        f"exec(compile(_src, {inside!r}, 'exec'), _ns)",
        f"_body = _original_of(_ns[{fn.__name__!r}]) or _ns[{fn.__name__!r}]",
        extra or "",
        "def target(call):",
        "    args, kwargs = call",
        "    _body(*args, **kwargs)",
        "",
    ])
    return source, os.path.dirname(path)


class _Runner:
    """The fork server of one decorated test, started on first use (or by the pytest plugin
    before the test runs, so that no example's time includes it)."""

    def __init__(self, fn: Callable[..., Any], limits: Limits | None, setup: str | None) -> None:
        self.fn, self.limits, self.setup = fn, limits, setup
        self.server: ForkServer | None = None
        self.lock = threading.Lock()

    def start(self) -> ForkServer:
        with self.lock:
            if self.server is None:
                source, where = _setup_source(self.fn, self.setup)
                self.server = ForkServer(_SourceIn(source, where), per_input=self.limits)
            return self.server

    def close(self) -> None:
        with self.lock:
            server, self.server = self.server, None
        if server is not None:
            server.close()


class _SourceIn(str):
    """Setup source that comes with a directory to bind at /setup (ForkServer reads it)."""

    def __new__(cls, source: str, directory: str) -> _SourceIn:
        obj = super().__new__(cls, source)
        obj.bind_dir = directory  # type: ignore[attr-defined]
        return obj


def isolated(fn: Callable[..., Any] | None = None, *, limits: Limits | None = None,
             setup: str | None = None) -> Any:
    """Decorate a test so that each call runs its body in a fork server (see the module)."""
    lim = checks.limits_of(limits)
    if setup is not None:
        setup = checks.python_code(setup)

    def wrap(body: Callable[..., Any]) -> Callable[..., Any]:
        runner = _Runner(body, lim, setup)

        @functools.wraps(body)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            verdict = runner.start().run((list(args), kwargs))
            if verdict.outcome != "ok":
                raise _failure_type(verdict)(verdict)

        setattr(wrapper, _MARK, body)
        wrapper.warden_runner = runner  # type: ignore[attr-defined]
        return wrapper

    return wrap(fn) if fn is not None else wrap
