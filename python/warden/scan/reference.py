"""The reference scanner: the same rules as warden's C++ scanner, decided on Python's own ``ast``.

Slow and plain on purpose; tests hold the native scanner to it finding for finding, and the
benchmark compares against it. Agreement is defined on (rule, line, col):

* Positions are ``ast``'s: a Name at its own position; an attribute at the position of the
  attribute's name token; an import finding at the alias (``a.b`` of ``import a.b``, each name
  of ``from m import x, y``, the ``*``); a call finding at the callee's name token.
* Inside an f-string (3.11 positions there are unreliable) every finding is reported at the
  start of the outermost string literal group, which is the ``JoinedStr`` node's position.
* Decoding is defined here, not left to ``ast.parse(bytes)``: BOM and coding line as CPython's
  tokenizer reads them, then the whole file strictly decoded (as ``import`` does).
* Source that ``ast`` refuses gives one ``syntax-error`` finding and nothing else; for it the
  rule is compared and its position is informative only (CPython's own error position depends
  on its parser's recovery).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from encodings.aliases import aliases as _ALIASES
from typing import Any

from warden.scan import Finding, Policy

__all__ = ["SINGLE_BYTE_CODECS", "reference_scan"]

SINGLE_BYTE_CODECS = frozenset({
    "ascii", "latin_1",
    "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7",
    "iso8859_8", "iso8859_9", "iso8859_10", "iso8859_11", "iso8859_13", "iso8859_14",
    "iso8859_15", "iso8859_16",
    "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258",
    "cp437", "cp850", "koi8_r", "koi8_u", "mac_roman",
})
_IMPORT_CALLS = {"__import__", "import_module"}
_ATTR_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
_ID_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_LINE_END = re.compile(r"\r\n|\r|\n")


def _coding_spec(s: bytes, size: int) -> str | None:
    lim = size - 6
    i = 0
    while i < lim:
        if s[i] == 0x23:
            break
        if s[i] not in b" \t\f":
            return None
        i += 1
    while i < lim:
        if s[i:i + 6] == b"coding" and s[i + 6] in b":=":
            t = i + 7
            while t < len(s) and s[t] in b" \t":
                t += 1
            begin = t
            while t < len(s) and (s[t] in _ID_BYTES or s[t] in b"-."):
                t += 1
            if begin < t:
                return s[begin:t].decode("ascii")
        i += 1
    return None


def _normal_name(s: str) -> str:
    buf = s[:12].replace("_", "-").lower()
    if buf == "utf-8" or buf.startswith("utf-8-"):
        return "utf-8"
    if buf in ("latin-1", "iso-8859-1", "iso-latin-1") or buf.startswith(
            ("latin-1-", "iso-8859-1-", "iso-latin-1-")):
        return "iso-8859-1"
    return s


def _codec_module(name: str) -> str:
    chars: list[str] = []
    punct = False
    for c in name.lower():
        if c.isalnum() or c == ".":
            if punct and chars:
                chars.append("_")
            chars.append(c)
            punct = False
        else:
            punct = True
    norm = "".join(chars)
    return _ALIASES.get(norm) or _ALIASES.get(norm.replace(".", "_")) or norm


def _line_col(text: bytes, offset: int) -> tuple[int, int]:
    head = text[:offset]
    line = 1 + head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")
    starts = [head.rfind(b"\n"), head.rfind(b"\r")]
    return line, offset - (max(starts) + 1)


def _decode(raw: bytes, is_text: bool) -> str | Finding:
    s, bom = raw, False
    if not is_text and s.startswith(b"\xef\xbb\xbf"):
        s, bom = s[3:], True
    spec, spec_line = None, 0
    nl0 = s.find(b"\n")
    if nl0 >= 0:
        spec, spec_line = _coding_spec(s, nl0), 1
        if spec is None:
            comment_only = True
            for ch in s[:nl0]:
                if ch in b"#\n\r":
                    break
                if ch not in b" \t\f":
                    comment_only = False
                    break
            nl1 = s.find(b"\n", nl0 + 1) if comment_only else -1
            if nl1 >= 0:
                spec, spec_line = _coding_spec(s[nl0 + 1:], nl1 - nl0 - 1), 2
    codec = "utf-8"
    if spec is not None:
        name = _normal_name(spec)
        if bom and name != "utf-8":
            return Finding("encoding-refused", spec_line, 0, f"{spec!r} contradicts the BOM")
        if name != "utf-8":
            module = _codec_module(name)
            if module not in ("utf_8", "utf_8_sig"):
                if module not in SINGLE_BYTE_CODECS:
                    return Finding("encoding-refused", spec_line, 0, f"codec {spec!r} refused")
                codec = module
    if is_text:
        codec = "utf-8"
    try:
        return s.decode(codec)
    except UnicodeDecodeError as exc:
        line, col = _line_col(s, exc.start)
        return Finding("decode-error", line, col, f"byte {s[exc.start]:#04x} does not decode")


def _n_escape(token: str) -> bool:
    """Whether a non-raw string token uses a \\N{...} escape."""
    found = re.match(r"[A-Za-z]*", token)
    prefix = found.group(0) if found else ""
    if "r" in prefix.lower():
        return False
    body, i = token[len(prefix):], 0
    while i < len(body) - 2:
        if body[i] == "\\":
            if body[i + 1] == "N" and body[i + 2] == "{":
                return True
            i += 2
        else:
            i += 1
    return False


class _Walker:
    def __init__(self, text: str, policy: Policy) -> None:
        self.text = text
        self.policy = policy
        self.lines = _LINE_END.split(text)
        self.found: list[Finding] = []

    def add(self, rule: str, pos: tuple[int, int], message: str, override) -> None:
        line, col = override or pos
        self.found.append(Finding(rule, line, col, message))

    def attr_pos(self, lineno: int, end_col: int) -> tuple[int, int]:
        lb = self.lines[lineno - 1].encode("utf-8", "surrogatepass")
        k = end_col
        while k > 0 and (lb[k - 1] >= 0x80 or lb[k - 1] in _ID_BYTES):
            k -= 1
        return lineno, k

    def segment(self, node) -> str:
        # ast.get_source_segment() re-splits the whole source on every call.
        first, last = node.lineno - 1, node.end_lineno - 1
        enc = [self.lines[i].encode("utf-8", "surrogatepass") for i in range(first, last + 1)]
        if first == last:
            return enc[0][node.col_offset:node.end_col_offset].decode("utf-8", "surrogatepass")
        enc[0] = enc[0][node.col_offset:]
        enc[-1] = enc[-1][:node.end_col_offset]
        return b"\n".join(enc).decode("utf-8", "surrogatepass")

    def literal(self, node, override) -> tuple[str, str]:
        if not (isinstance(node, ast.Constant) and type(node.value) is str):
            return "no", ""
        if override is None:
            seg = self.segment(node)
            toks = tokenize.generate_tokens(io.StringIO(seg).readline)
            if any(t.type == tokenize.STRING and _n_escape(t.string) for t in toks):
                return "undecidable", ""
        return "yes", node.value

    def call(self, node: ast.Call, override) -> None:
        f = node.func
        if isinstance(f, ast.Name):
            fn, pos = f.id, (f.lineno, f.col_offset)
        elif isinstance(f, ast.Attribute):
            # Parsed from source: every node has its end position.
            fn, pos = f.attr, self.attr_pos(f.end_lineno or 0, f.end_col_offset or 0)
        else:
            return
        if fn in _IMPORT_CALLS:
            kind, value = self.literal(node.args[0], override) if node.args else ("no", "")
            if kind == "yes" and value and not value.startswith("."):
                if self.policy.module_forbidden(value):
                    self.add("import-forbidden", pos, f"{fn}({value!r})", override)
            else:
                self.add("import-dynamic", pos, f"{fn}() of a computed name", override)
        elif fn in _ATTR_CALLS:
            kind, value = self.literal(node.args[1], override) if len(node.args) > 1 else ("no", "")
            if kind == "yes":
                if value in self.policy.forbidden_attributes:
                    self.add("attr-forbidden", pos, f"{fn}(..., {value!r})", override)
            else:
                self.add("getattr-dynamic", pos, f"{fn}() of a computed name", override)

    def resolve(self, level: int, module: str | None) -> str | None:
        if level == 0:
            return module
        pkg = self.policy.package
        if not pkg:
            return None
        parts = pkg.split(".")
        if level - 1 >= len(parts):
            return None
        base = ".".join(parts[:len(parts) - (level - 1)])
        return f"{base}.{module}" if module else base

    def walk(self, tree: ast.AST) -> list[Finding]:
        pol = self.policy
        # Any: the loop below dispatches on type(node) itself, faster than isinstance chains
        # that a checker could follow.
        nodes: list[Any] = list(ast.walk(tree))
        # Everything inside an f-string is reported at the outermost JoinedStr.
        inside: dict[int, tuple[int, int]] = {}
        for node in nodes:
            if type(node) is ast.JoinedStr and id(node) not in inside:
                pos = (node.lineno, node.col_offset)
                for sub in ast.walk(node):
                    inside[id(sub)] = pos
        Name, Attribute, Call = ast.Name, ast.Attribute, ast.Call
        Import, ImportFrom = ast.Import, ast.ImportFrom
        builtins, names, attrs = pol.forbidden_builtins, pol.forbidden_names, pol.forbidden_attributes
        for node in nodes:
            t = type(node)
            if t is Name:
                if node.id in builtins or node.id in names:
                    override = inside.get(id(node))
                    pos = (node.lineno, node.col_offset)
                    if node.id in builtins:
                        self.add("builtin-forbidden", pos, node.id, override)
                    if node.id in names:
                        self.add("name-forbidden", pos, node.id, override)
            elif t is Attribute:
                if node.attr in attrs:
                    override = inside.get(id(node))
                    pos = override or self.attr_pos(node.end_lineno, node.end_col_offset)
                    self.add("attr-forbidden", pos, node.attr, override)
            elif t is Call:
                f = node.func
                fn = f.id if type(f) is Name else f.attr if type(f) is Attribute else None
                if fn in _IMPORT_CALLS or fn in _ATTR_CALLS:
                    self.call(node, inside.get(id(node)))
            elif t is Import:
                for a in node.names:
                    if pol.module_forbidden(a.name):
                        self.add("import-forbidden", (a.lineno, a.col_offset), a.name,
                                 inside.get(id(node)))
            elif t is ImportFrom:
                base = self.resolve(node.level, node.module)
                if base is not None:
                    for a in node.names:
                        target = base if a.name == "*" else f"{base}.{a.name}"
                        if pol.module_forbidden(target):
                            self.add("import-forbidden", (a.lineno, a.col_offset), target,
                                     inside.get(id(node)))
        return self.found


def reference_scan(source: str | bytes, policy: Policy | None = None) -> list[Finding]:
    """Scans like :func:`warden.scan` but with ``ast``; findings sorted, without duplicates."""
    policy = policy or Policy.default()
    if isinstance(source, str):
        decoded = _decode(source.encode("utf-8", "surrogatepass"), True)
    else:
        decoded = _decode(bytes(source), False)
    if isinstance(decoded, Finding):
        return [decoded]
    try:
        with warnings.catch_warnings():
            # Invalid escapes and the like are the scanned code's business, not the caller's.
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            tree = ast.parse(decoded)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 1
        col = max((getattr(exc, "offset", None) or 1) - 1, 0)
        return [Finding("syntax-error", line, col, str(exc))]
    found = _Walker(decoded, policy).walk(tree)
    uniq = {(f.line, f.col, f.rule, f.message): f for f in found}
    return [uniq[k] for k in sorted(uniq)]
