"""warden.scan: each rule in each of its forms, at the exact place, and always equal to the
ast reference; Policy as plain data; scan_paths; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import warden
from warden.errors import ManifestError
from warden.scan import Policy, scan_stats
from warden.scan.reference import reference_scan


def found(source, policy=None):
    """(rule, line, col) found by the C++ scanner; asserts the reference agrees (for a
    syntax-error the rule alone is compared: see warden.scan.reference)."""
    got = {(f.rule, f.line, f.col) for f in warden.scan(source, policy=policy)}
    ref = {(f.rule, f.line, f.col) for f in reference_scan(source, policy)}
    if any(r == "syntax-error" for r, _, _ in got | ref):
        assert {r for r, _, _ in got} == {r for r, _, _ in ref} == {"syntax-error"}, (source, got, ref)
    else:
        assert got == ref, (source, sorted(got), sorted(ref))
    return got


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# --- imports ----------------------------------------------------------------------------------

@pytest.mark.parametrize("code,where", [
    ("import os\n", (1, 7)),
    ("import os.path as p\n", (1, 7)),
    ("import json, os\n", (1, 13)),
    ("from os import path\n", (1, 15)),
    ("from os.path import *\n", (1, 20)),
    ("x = 1; import subprocess\n", (1, 14)),
    ("def f():\n    import socket\n", (2, 11)),
    ("from ctypes import (\n    CDLL,\n)\n", (2, 4)),
    ("import \\\n  os\n", (2, 2)),
    ("__import__('os')\n", (1, 0)),
    ("importlib.import_module('sys')\n", (1, 10)),
    ("__import__(('o' 's'))\n", (1, 0)),
])
def test_forbidden_import_forms(code, where):
    assert ("import-forbidden",) + where in found(code)


def test_allowed_import_is_clean_and_submodules_follow_their_package():
    assert found("import json\nfrom collections import abc\n") == set()
    pol = Policy.empty().forbid(modules=["os"]).allow(modules=["os.path"])
    assert found("import os.path\nfrom os import path\n", pol) == set()
    assert found("from os import sep\n", pol) == {("import-forbidden", 1, 15)}


def test_relative_import_is_checked_against_the_package():
    pol = Policy.empty().forbid(modules=["evil"]).with_package("evil.sub")
    assert found("from . import x\nfrom .. import y\nfrom ...z import w\n", pol) == {
        ("import-forbidden", 1, 14), ("import-forbidden", 2, 15)}
    assert found("from . import x\n", Policy.empty().forbid(modules=["evil"])) == set()


def test_computed_module_names_are_their_own_finding():
    assert found("__import__(name)\n") >= {("import-dynamic", 1, 0)}
    assert ("import-dynamic", 1, 4) in found("lib.import_module('o' + 's')\n")
    assert ("import-dynamic", 1, 0) in found("import_module(f'os')\n")
    assert ("import-dynamic", 1, 0) in found("import_module('\\N{LATIN SMALL LETTER O}s')\n")


# --- builtins, names, attributes ---------------------------------------------------------------

@pytest.mark.parametrize("code,where", [
    ("eval('1')\n", (1, 0)),
    ("@exec\ndef f(): pass\n", (1, 1)),
    ("def f(x=compile): pass\n", (1, 8)),
    ("def f(x: eval = 1): pass\n", (1, 9)),
    ("def f(*, x: eval = 1): pass\n", (1, 12)),
    ("f = lambda: breakpoint()\n", (1, 12)),
    ("[globals() for _ in x]\n", (1, 1)),
    ("{k: locals() for k in x}\n", (1, 4)),
    ("x = f'{vars()}'\n", (1, 4)),
    ("x = f'{y!r:>{input()}}'\n", (1, 4)),
    ("x = 'a' f\"{f'{eval}'}\"\n", (1, 4)),
    ("e = eval\n", (1, 4)),
    ("ｅｖａｌ('1')\n", (1, 0)),
    ("x = 1; ｅｘｅｃ('1')\n", (1, 7)),
])
def test_dangerous_builtins_everywhere(code, where):
    assert ("builtin-forbidden",) + where in found(code)


def test_names_that_are_not_builtin_references_are_not_flagged():
    code = src("""
        def eval(exec, *compile, vars=1, **input): pass
        class globals: pass
        f(locals=1)
        import json as breakpoint
        global vars
        try:
            pass
        except E as eval:
            pass
        x.eval()
        match x:
            case [eval, *exec] | {"k": compile, **vars}:
                pass
        lambda eval, *exec: 0
    """)
    assert found(code) == set()


def test_bare_dunder_names_and_introspection_attributes():
    code = src("""
        b = __builtins__
        s = __spec__.loader
        c = ().__class__.__bases__[0].__subclasses__()
        g = f.__globals__
        t = e.__traceback__.tb_frame.f_back.f_globals
        m = x.\\
            __mro__
    """)
    assert found(code) == {
        ("name-forbidden", 1, 4), ("name-forbidden", 2, 4),
        ("attr-forbidden", 3, 7), ("attr-forbidden", 3, 17), ("attr-forbidden", 3, 30),
        ("attr-forbidden", 4, 6), ("attr-forbidden", 5, 20), ("attr-forbidden", 5, 29),
        ("attr-forbidden", 5, 36), ("attr-forbidden", 7, 4),
    }


def test_getattr_family():
    code = src("""
        getattr(x, 'name')
        getattr(x, '__class__')
        setattr(x, n, 1)
        delattr(x, *a)
        hasattr(x, '\\x5f_globals__')
        builtins.getattr(x)
    """)
    assert found(code) == {
        ("attr-forbidden", 2, 0), ("getattr-dynamic", 3, 0), ("getattr-dynamic", 4, 0),
        ("attr-forbidden", 5, 0), ("getattr-dynamic", 6, 9),
    }


def test_match_class_pattern_is_a_name_but_not_a_call():
    code = "match x:\n    case eval(a=1):\n        pass\n    case getattr():\n        pass\n"
    assert found(code) == {("builtin-forbidden", 2, 9)}


# --- lines judged at their end -----------------------------------------------------------------

def test_lines_whose_tokens_depend_on_later_ones_are_judged_like_any_other():
    # The scanner handles most tokens as the tokenizer makes them; these lines (an import, a
    # listed name, getattr, match, the first line of a block) need tokens further on and are
    # judged once their logical line is complete.
    code = src("""
        import json; x = eval
        if x:
            exec(x)
        def f(a, b=locals):
            return getattr(a, 'f_' 'back'), a.__class__
        match x:
            case compile():
                pass
            case {"k": globals}:
                pass
        y = [__builtins__
             for _ in ()]; from os import path
        z = __init__ + __name__ + vars + f'{input}'
        class C(dict, metaclass=__spec__):
            def __getattr__(self, name): return hasattr(self, name)
        """)
    assert found(code) == {
        ("builtin-forbidden", 1, 17), ("builtin-forbidden", 3, 4), ("builtin-forbidden", 4, 11),
        ("attr-forbidden", 5, 11),
        ("attr-forbidden", 5, 38), ("builtin-forbidden", 7, 9), ("name-forbidden", 11, 5),
        ("import-forbidden", 12, 34), ("builtin-forbidden", 13, 26),
        ("builtin-forbidden", 13, 33), ("name-forbidden", 14, 24), ("getattr-dynamic", 15, 40),
    }


@pytest.mark.parametrize("code,where", [
    ("import os as\n", (1, 7)),
    ("x = 1\nfrom os import path as\n", (2, 15)),
    ("import json as\nimport os\n", (2, 7)),
])
def test_an_import_python_refuses_still_has_its_forbidden_modules_flagged(code, where):
    # An import ending in 'as' sends the scanner past the end of its line: the modules it names
    # are still found (ast refuses the source outright, so the reference is not compared).
    assert ("import-forbidden",) + where in {(f.rule, f.line, f.col) for f in warden.scan(code)}


# --- source forms -------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"])
def test_line_ends(sep):
    code = sep.join(["x = 1", "if x:", "\tx = eval", "\f", "y = '''a", "b''' ; exec", ""])
    assert found(code) == {("builtin-forbidden", 3, 5), ("builtin-forbidden", 6, 7)}


@pytest.mark.parametrize("prefix", ["", "r", "u", "R", "b", "rb", "Br", "bR", "f", "rf", "Fr", "FR"])
def test_string_prefixes_hide_nothing_and_show_nothing(prefix):
    body = "eval" if "f" not in prefix.lower() else "{x}"
    code = f"x = {prefix}'{body}' + {prefix}'''\n{body}\n''' + {prefix}\"\\\"eval\"\ny = eval\n"
    assert found(code) == {("builtin-forbidden", 4, 4)}


def test_coding_declarations():
    assert found(b"# -*- coding: latin-1 -*-\nx = '\xe9'; eval\n") == {("builtin-forbidden", 2, 10)}
    assert found(b"#!/usr/bin/python\n# vim: set fileencoding=koi8-r :\neval\n") == {
        ("builtin-forbidden", 3, 0)}
    for codec in (b"utf-7", b"unicode_escape", b"raw-unicode-escape", b"utf-16", b"rot13",
                  b"no-such-codec", b"shift_jis"):
        assert found(b"# coding: " + codec + b"\nx = 1\n") == {("encoding-refused", 1, 0)}
    assert found(b"\n# coding=utf_7\n") == {("encoding-refused", 2, 0)}
    assert found(b"x = 1\n# coding: utf-7\n") == set()  # only line 1, or 2 after a comment
    assert found(b"\xef\xbb\xbf# coding: latin-1\nx = 1\n") == {("encoding-refused", 1, 0)}
    assert found("# coding: utf-7\n+AGU-val\n") == {("encoding-refused", 1, 0)}


def test_undecodable_bytes():
    assert found(b"x = 1\ny = '\xff'\n") == {("decode-error", 2, 5)}
    assert found(b"x = 1\r\ny = '\xed\xa0\x80'\n") == {("decode-error", 2, 5)}
    assert found(b"# coding: ascii\nx = '\xe9'\n") == {("decode-error", 2, 5)}


@pytest.mark.parametrize("code", [
    "x = 'abc\n", "x = '''abc\n", "if x:\n  y\n z\n", "  x = 1\n", "if x:\nx\n", "x = (1,\n",
    "x = 1)\n", "print 'x'\n", "x = 0777\n", "x = 1__0\n", "x = €\n", "x = $\n", "a = 1\0\n",
    "f'{'\n", "f'{x!z}'\n", "x = b'a' 'b'\n", "f'}'\n", "f'{#}'\n", "b'\xe9'\n", "x = \\ 1\n", "x = 1 \\",
    "if x:\n\tif y:\n        z\n",
])
def test_malformed_input_is_a_syntax_finding(code):
    assert {r for r, _, _ in found(code)} == {"syntax-error"}


def test_str_and_bytes_agree_and_types_are_checked():
    assert warden.scan("eval\n") == warden.scan(b"eval\n")
    with pytest.raises(TypeError):
        warden.scan(1)


def test_finding_fields():
    (f,) = warden.scan("import os\n", filename="p.py")
    assert (f.rule, f.line, f.col, f.severity, f.filename) == ("import-forbidden", 1, 7, "error", "p.py")
    assert "os" in f.message and "refused" in f.message
    assert str(f).startswith("p.py:1:7: import-forbidden:")


def test_work_counter_is_exposed():
    st = scan_stats("x = 1\n")
    assert st.bytes == 6 and st.tokens >= 4 and st.steps >= st.bytes


# --- Policy -------------------------------------------------------------------------------------

def test_policy_is_plain_data_and_round_trips():
    p = Policy.default().forbid(builtins=["open"]).allow(attributes=["__dict__"], modules=["os.path"])
    assert Policy.from_dict(p.to_dict()) == p
    assert "open" in p.forbidden_builtins and "__dict__" not in p.forbidden_attributes
    assert ("builtin-forbidden", 1, 0) in found("open('x')\n", p)
    assert found("x.__dict__\n", p) == set()


def test_policy_star_and_longest_match():
    p = Policy.from_dict({"extends": "empty", "forbid_modules": ["*"], "allow_modules": ["json", "os.path"]})
    assert p.module_forbidden("socket") and p.module_forbidden("os")
    assert not p.module_forbidden("json.decoder") and not p.module_forbidden("os.path")
    assert found("import json, os.path, re\n", p) == {("import-forbidden", 1, 22)}


def test_policy_load_yaml_json_and_manifest(tmp_path):
    (tmp_path / "p.yaml").write_text("forbid_modules: [json]\nallow_builtins: [input]\n")
    (tmp_path / "p.json").write_text(json.dumps({"forbid_attributes": ["real"]}))
    (tmp_path / "plugin.yaml").write_text("name: x\nscan:\n  extends: empty\n  forbid_builtins: [print]\n")
    assert "json" in Policy.load(tmp_path / "p.yaml").forbidden_modules
    assert "input" not in Policy.load(tmp_path / "p.yaml").forbidden_builtins
    assert "real" in Policy.load(tmp_path / "p.json").forbidden_attributes
    assert Policy.load(tmp_path / "plugin.yaml").forbidden_builtins == frozenset({"print"})


@pytest.mark.parametrize("bad", [{"forbid_modules": "os"}, {"forbid_builtins": ["not valid"]},
                                 {"extends": "strict"}, {"forbidden": []}, {"forbid_names": ["é"]}])
def test_policy_refuses_invalid_data(bad):
    with pytest.raises(ManifestError):
        Policy.from_dict(bad)


# --- scan_paths and CLI -------------------------------------------------------------------------

def test_scan_paths_threads_and_unreadable(tmp_path):
    (tmp_path / "a.py").write_text("import os\n")
    (tmp_path / "b.py").write_text("x = 1\n")
    sub = tmp_path / "pkg"
    sub.mkdir()
    (sub / "c.py").write_bytes(b"# coding: utf-7\n")
    for threads in (None, 1, 3):
        res = warden.scan_paths([tmp_path], threads=threads)
        assert {os.path.basename(k): [f.rule for f in v] for k, v in res.items()} == {
            "a.py": ["import-forbidden"], "b.py": [], "c.py": ["encoding-refused"]}
    res = warden.scan_paths([tmp_path / "missing.py"])
    assert [f.rule for f in res[str(tmp_path / "missing.py")]] == ["file-unreadable"]


def _cli(*args):
    # The child must import the same warden as this test (installed, or the source tree).
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(warden.__file__)))
    return subprocess.run([sys.executable, "-m", "warden", "scan", *args], capture_output=True,
                          text=True, env=env, check=False)


def test_cli_exit_codes_json_and_policy(tmp_path):
    clean, dirty = tmp_path / "clean.py", tmp_path / "dirty.py"
    clean.write_text("x = 1\n")
    dirty.write_text("import json\n")
    assert _cli(str(clean)).returncode == 0
    pol = tmp_path / "p.yaml"
    pol.write_text("forbid_modules: [json]\n")
    r = _cli(str(dirty), "--json", "--policy", str(pol))
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data[str(dirty)][0]["rule"] == "import-forbidden"
    assert _cli(str(dirty)).returncode == 0
    assert _cli(str(tmp_path / "nope.py")).returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("forbid_modules: os\n")
    assert _cli(str(clean), "--policy", str(bad)).returncode == 2
