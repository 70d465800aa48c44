"""The setup that ``warden fuzz`` gives a fork server: it loads an atheris target inside the
sandbox with atheris's own bytecode instrumentation, and answers each input with the coverage
it took, for the libFuzzer loop on the host to replay (warden.testing.fuzzdriver).

Inside the sandbox, atheris's hooks are replaced before anything is instrumented:
``_reserve_counter`` numbers the counters from 0, ``_trace_branch`` counts the hits of each
counter and ``_trace_cmp`` keeps the operands of the first comparisons of small bytes, str
and int values (and still compares). The entry, called with an input's bytes, runs
``TestOneInput`` and returns ``[counters, hits, comparisons]``: ``counters`` and ``hits`` are
packed arrays (uint32, uint8, hits capped at 255), ``comparisons`` a list of
``[left, right, op, counter, left_is_const]``. Called with None it returns how many counters
setup reserved. An input that raises or crashes returns no coverage: its verdict is what
matters.

The target file is executed as a module named ``__warden_fuzz_target__``, not ``__main__``,
so its ``atheris.Setup(...)``/``atheris.Fuzz()`` under ``if __name__ == "__main__"`` do not
run; it must define ``TestOneInput(data)``.
"""

from __future__ import annotations

__all__ = ["SOURCE"]

SOURCE = r'''
import array, operator, sys
import atheris
from atheris import version_dependent as _vd

_TARGET = {target!r}
_MAX_CMPS = 512
_MAX_OPERAND = 64
_OPS = (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge)
_SMALL = (bytes, str, int)
_next = [0]
_hits = {{}}
_cmps = []
_seen = set()


def _reserve_counter():
    n = _next[0]
    _next[0] = n + 1
    return n


def _trace_branch(idx):
    _hits[idx] = _hits.get(idx, 0) + 1


def _trace_cmp(left, right, op, idx, left_is_const):
    result = _OPS[(op >> _vd.CMP_OP_SHIFT_AMOUNT) & 7](left, right)
    t = type(left)
    if (len(_cmps) < _MAX_CMPS and t is type(right) and t in _SMALL and t is not bool
            and (t is int or (len(left) <= _MAX_OPERAND and len(right) <= _MAX_OPERAND))):
        key = (idx, left, right)
        if key not in _seen:
            _seen.add(key)
            _cmps.append([left, right, op, idx, bool(left_is_const)])
    return result


atheris._reserve_counter = _reserve_counter
atheris._trace_branch = _trace_branch
atheris._trace_cmp = _trace_cmp


def _load():
    import importlib.util
    import os
    sys.path.insert(0, os.path.dirname(_TARGET))
    with open(_TARGET, "rb") as f:
        source = f.read()
    module = type(sys)("__warden_fuzz_target__")
    module.__file__ = _TARGET
    sys.modules[module.__name__] = module
    code = atheris.patch_code(compile(source, _TARGET, "exec"), True)
    with atheris.instrument_imports():
        exec(code, module.__dict__)
    entry = module.__dict__.get("TestOneInput")
    if not callable(entry):
        raise NameError("the fuzz target defines no TestOneInput(data)")
    return entry


_test_one_input = _load()


def target(data):
    if data is None:
        return _next[0]
    _test_one_input(data)
    ids = array.array("I", _hits)
    hits = bytes(min(_hits[i], 255) for i in ids)
    return [ids.tobytes(), hits, _cmps]
'''
