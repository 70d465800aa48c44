"""Property tests of the scanner: planted constructs are found at their exact place in generated
programs (and the whole program agrees with the ast reference); random and mutated input never
crashes it; and its work, counted by the C++ itself, grows linearly with the input."""

from __future__ import annotations

import ast
import os
import re
import sysconfig

import warden
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from warden.scan import RULES, scan_stats
from warden.scan.reference import reference_scan

# (code, rule, column of the finding within the code)
PLANTS = [
    ("x = eval(1)", "builtin-forbidden", 4),
    ("import os", "import-forbidden", 7),
    ("import json, subprocess as sp", "import-forbidden", 13),
    ("from os import path", "import-forbidden", 15),
    ("y = a.__class__", "attr-forbidden", 6),
    ("y = (a)  .  __globals__", "attr-forbidden", 12),
    ("z = getattr(a, b)", "getattr-dynamic", 4),
    ("z = getattr(a, '__dict__')", "attr-forbidden", 4),
    ("w = f'{exec}'", "builtin-forbidden", 4),
    ("w = Rb'x' b'y'; w = r'x' f'{u!r:{vars()}}'", "builtin-forbidden", 20),
    ("q = __builtins__", "name-forbidden", 4),
    ("r = __import__(n)", "import-dynamic", 4),
    ("r = m.import_module('socket')", "import-forbidden", 6),
    ("s = [compile for _ in t]", "builtin-forbidden", 5),
    ("t = lambda k=globals: k", "builtin-forbidden", 13),
    ("u = ｂｒｅａｋｐｏｉｎｔ", "builtin-forbidden", 4),
    ("v = g.gi_frame", "attr-forbidden", 6),
]
SAFE = [
    "a = 1", "b = a + 2", "c = f(a, k=b)", "d = [i for i in range(3)]", "e = {'k': (1, 2)}",
    "g = 'text with eval in it'", "h = '''multi\nline eval'''", "pass", "k = x.real",
    "m = f'{a}{b!r:>4}'", "n = lambda p, *q, **r: p", "o = b'\\x00'", "p = 0x1F + 1_000 + 1e-3j",
    "q = a if b else c  # eval() in a comment", "r = (1,\n     2)", "s = \\\n    3",
]
NAMES = st.from_regex(r"[a-z]{1,6}_[a-z0-9]{0,4}", fullmatch=True)


@st.composite
def programs(draw):
    """A program of safe statements, some in nested blocks, with one planted construct; returns
    (source, line, col, rule) of the plant."""
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    indent_unit = draw(st.sampled_from(["    ", "  ", "\t"]))
    lines, depth, plant_at = [], 0, None
    n = draw(st.integers(3, 25))
    target = draw(st.integers(0, n - 1))
    for i in range(n):
        kind = draw(st.sampled_from(["safe", "safe", "open", "close"]))
        if i == target:
            code, rule, col = draw(st.sampled_from(PLANTS))
            prefix = indent_unit * depth
            plant_at = (sum(s.count("\n") + 1 for s in lines) + 1,
                        len(prefix.encode()) + col, rule)
            lines.append(prefix + code)
            continue
        if kind == "open" and depth < 6:
            head = draw(st.sampled_from(["if a:", "for {n} in b:", "def {n}(x, y=2):",
                                         "class {n}:", "while c:", "with d as {n}:"]))
            lines.append(indent_unit * depth + head.format(n=draw(NAMES)))
            depth += 1
            lines.append(indent_unit * depth + "pass")
        elif kind == "close" and depth > 0:
            depth -= 1
        else:
            stmt = draw(st.sampled_from(SAFE))
            lines.append("\n".join(indent_unit * depth + s if j == 0 else s
                                   for j, s in enumerate(stmt.split("\n"))))
    source = eol.join(s.replace("\n", eol) for s in lines) + eol
    line, col, rule = plant_at
    return source, line, col, rule


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_planted_construct_found_at_its_place(case):
    source, line, col, rule = case
    got = {(f.rule, f.line, f.col) for f in warden.scan(source)}
    assert (rule, line, col) in got, (source, sorted(got))
    assert got == {(f.rule, f.line, f.col) for f in reference_scan(source)}


def _check_shape(findings):
    for f in findings:
        assert f.rule in RULES and f.line >= 0 and f.col >= 0 and f.message


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    _check_shape(warden.scan(data))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("()[]{}'\"\\#:=.,;@*fbrux_ \t\n\r\f0123456789eval"
                                            "éｅ€\x00")), max_size=300))
def test_random_python_like_text_never_crashes(text):
    _check_shape(warden.scan(text))
    _check_shape(warden.scan(text.encode("utf-8")))


SEEDS = []
for _name in ("ast.py", "string.py", "tokenize.py", "dataclasses.py"):
    with open(os.path.join(sysconfig.get_paths()["stdlib"], _name), "rb") as _fh:
        SEEDS.append(_fh.read()[:6000])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 5999), st.integers(0, 8),
                                                  st.binary(max_size=6)), max_size=8))
def test_mutated_source_never_crashes(seed, edits):
    data = bytearray(seed)
    for pos, cut, insert in edits:
        pos %= len(data) + 1
        data[pos:pos + cut] = insert
    _check_shape(warden.scan(bytes(data)))


# Inputs built to push a scanner into super-linear work: deep nesting, long chains, f-strings
# in f-strings, lambdas in defaults, long concatenations, continuation lines.
PATTERNS = {
    "nested-getattr": lambda k: "x = " + "getattr(" * k + "a" + ", 'b')" * k + "\n",
    "nested-import": lambda k: "x = " + "__import__(" * k + "'a'" + ")" * k + "\n",
    "brackets": lambda k: "x = " + "([{" * min(k, 60) + "1" + "}])" * min(k, 60) + "\n" * k,
    "attr-chain": lambda k: "x = a" + ".b" * k + "\n",
    "fstrings": lambda k: "x = " + " ".join("f'{a}{b!r:>{c}}{d}'" for _ in range(k)) + "\n",
    "nested-fstrings": lambda k: "x = f\"{f'''{f'{a}'}'''}\"\n" * k,
    "lambdas": lambda k: "f(" + ", ".join("lambda a=lambda b: b, *c: a" for _ in range(k)) + ")\n",
    "strings": lambda k: "x = " + " ".join("'a' r\"b\" '''c'''" for _ in range(k)) + "\n",
    "continuations": lambda k: "x = 1 + \\\n" * k + "1\n",
    "match": lambda k: "match x:\n" + "    case [a, {'k': b}, C(d=e)] if f(g):\n        pass\n" * k,
    "calls": lambda k: "getattr(a, b, " * k + "c" + ")" * k + "\n",
    "unterminated": lambda k: "x = (" + "'abc' " * k,
    "decorators": lambda k: "@eval\n" * k + "def f(): pass\n",
    "imports": lambda k: "from a.b.c import (" + ", ".join(f"n{i} as m{i}" for i in range(k)) + ")\n",
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(PATTERNS)), st.integers(20, 150))
def test_work_is_linear_in_the_input(name, k):
    small = PATTERNS[name](k).encode()
    big = PATTERNS[name](2 * k).encode()
    s1, s2 = scan_stats(small), scan_stats(big)
    assert s1.steps <= 16 * s1.bytes + 64, (name, k, s1)
    assert s2.steps <= 16 * s2.bytes + 64, (name, k, s2)
    # Doubling the input at most doubles the work (plus slack for fixed costs).
    assert s2.steps <= 2.2 * s1.steps + 256, (name, k, s1, s2)


KEYWORDS = set(__import__("keyword").kwlist) | {"match", "case", "_"}
DIFF_SEEDS = []
for _name in ("argparse.py", "inspect.py", "dataclasses.py", "typing.py", "enum.py"):
    with open(os.path.join(sysconfig.get_paths()["stdlib"], _name), encoding="utf-8") as _fh:
        _text = _fh.read()[:30000]
    _idents = [m for m in re.finditer(r"\b[A-Za-z_][A-Za-z0-9_]*\b", _text)
               if m.group() not in KEYWORDS]
    DIFF_SEEDS.append((_text, _idents))
HOSTILE_NAMES = ["eval", "exec", "__builtins__", "__spec__", "getattr", "__import__",
                 "import_module", "vars", "__class__", "f_back", "__globals__", "setattr"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(DIFF_SEEDS))),
       st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(HOSTILE_NAMES)), min_size=1, max_size=40))
def test_real_code_with_hostile_names_agrees_with_the_reference(seed, renames):
    """Identifiers of real stdlib code renamed to hostile names, wherever they stand (parameter,
    keyword argument, attribute, import, annotation...): both scanners decide the same."""
    text, idents = DIFF_SEEDS[seed]
    chosen = {idents[k % len(idents)].start(): (idents[k % len(idents)], name) for k, name in renames}
    for start in sorted(chosen, reverse=True):
        m, name = chosen[start]
        text = text[:m.start()] + name + text[m.end():]
    try:
        ast.parse(text)
        valid = True
    except SyntaxError:
        valid = False
    assume(valid)  # a rename can make code invalid, and then there is nothing to compare
    got = {(f.rule, f.line, f.col) for f in warden.scan(text)}
    assert got == {(f.rule, f.line, f.col) for f in reference_scan(text)}
