"""The notebook runner of ``Sandbox.run_code``: one per code context, a Python process of the
sandbox started with this file's source (``python3 -I -c SOURCE NONCE``).

It reads cells from stdin, one JSON line each (``{"code": str}``), runs each in the
context's one namespace (so state persists from cell to cell), and answers each with one line
on stdout: NONCE followed by JSON ``{"stdout", "stderr", "result", "display", "error"}``.
``result`` is the text of the last expression's value (its repr, as a notebook shows it);
``display`` holds MIME bundles of objects that offer ``_repr_html_``, ``_repr_png_``,
``_repr_svg_``, ``_repr_markdown_`` or ``_repr_json_``; ``error`` is the name, value and
traceback of an exception the cell raised, or null. SIGINT (the host's timeout) interrupts
the running cell with KeyboardInterrupt and the context lives on.

Imports only the standard library: it runs under the sandbox's Python (a container's too).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import sys
import traceback

_MIME = (("text/html", "_repr_html_"), ("image/png", "_repr_png_"),
         ("image/svg+xml", "_repr_svg_"), ("text/markdown", "_repr_markdown_"),
         ("application/json", "_repr_json_"))
_CAP = 1 << 20


def bundle(value: object) -> dict:
    """The MIME bundle of ``value``: text/plain always, and what its _repr_*_ methods give."""
    out = {"text/plain": repr(value)[:_CAP]}
    for mime, name in _MIME:
        fn = getattr(value, name, None)
        if not callable(fn):
            continue
        try:
            got = fn()
        except Exception:  # a broken _repr_ is skipped, as a notebook does
            continue
        if isinstance(got, bytes):
            got = base64.b64encode(got).decode()
        if got is not None:
            out[mime] = got if isinstance(got, str) else json.dumps(got)
    return out


def run_cell(code: str, namespace: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    reply: dict = {"result": None, "display": [], "error": None}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            tree = ast.parse(code, "<cell>", "exec")
            last = tree.body[-1] if tree.body else None
            if isinstance(last, ast.Expr):
                tree.body.pop()
            else:
                last = None
            exec(compile(tree, "<cell>", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
                if value is not None:
                    namespace["_"] = value
                    reply["result"] = repr(value)[:_CAP]
                    shown = bundle(value)
                    if len(shown) > 1:
                        reply["display"].append(shown)
        except BaseException as exc:  # KeyboardInterrupt too: the context lives on
            if isinstance(exc, SystemExit):
                raise
            reply["error"] = {"name": type(exc).__name__, "value": str(exc)[:_CAP],
                              "traceback": traceback.format_exc()[-_CAP:]}
    reply["stdout"], reply["stderr"] = out.getvalue()[-_CAP:], err.getvalue()[-_CAP:]
    return reply


def main() -> None:
    nonce = sys.argv[1]
    namespace: dict = {"__name__": "__main__"}
    answer = sys.stdout
    for line in sys.stdin:
        try:
            code = json.loads(line)["code"]
        except (ValueError, KeyError, TypeError):
            continue
        try:
            reply = run_cell(code, namespace)
        except KeyboardInterrupt:  # between cells
            reply = {"stdout": "", "stderr": "", "result": None, "display": [],
                     "error": {"name": "KeyboardInterrupt", "value": "", "traceback": ""}}
        answer.write(nonce + json.dumps(reply) + "\n")
        answer.flush()


if __name__ == "__main__":
    main()
