"""The source scanner: a fast first gate that refuses obviously hostile Python before it runs.

The scanning is done by warden's native core (``warden._core``, C++, GIL released). This module
holds the plain-data :class:`Policy`, the :class:`Finding` record, and the two entry points
:func:`scan` and :func:`scan_paths`. The kernel sandbox stays the boundary; the scanner only
explains early and precisely why code is refused.

Rules (stable ids):

=================== =====================================================================
import-forbidden    import of a forbidden module, in any form (also ``__import__("m")``)
import-dynamic      ``__import__`` / ``import_module`` with a module name that is not a literal
builtin-forbidden   a dangerous builtin named (eval, exec, compile, ...)
name-forbidden      ``__builtins__``, ``__loader__``, ``__spec__`` used as names
attr-forbidden      introspection attributes (``__class__``, ``__globals__``, ``f_back``...),
                    also through ``getattr(x, "...")`` and friends
getattr-dynamic     getattr/setattr/delattr/hasattr with a computed attribute name
encoding-refused    a coding declaration naming a codec that can hide code, or an unknown one
decode-error        bytes that do not decode in the declared encoding
syntax-error        source Python would refuse to tokenize or parse
file-unreadable     (scan_paths only) the file could not be read, or was refused: a symbolic
                    link, not a regular file, or larger than ``max_file_bytes``
=================== =====================================================================
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from warden.errors import ManifestError

__all__ = ["RULES", "Finding", "Policy", "ScanStats", "scan", "scan_paths", "scan_stats"]

RULES = (
    "import-forbidden",
    "import-dynamic",
    "builtin-forbidden",
    "name-forbidden",
    "attr-forbidden",
    "getattr-dynamic",
    "encoding-refused",
    "decode-error",
    "syntax-error",
    "file-unreadable",
)

DEFAULT_FORBIDDEN_MODULES = (
    "__main__", "_ctypes", "_io", "_posixsubprocess", "_thread", "asyncio", "builtins", "code",
    "codeop", "ctypes", "cffi", "fcntl", "ftplib", "gc", "glob", "http", "imp", "importlib",
    "inspect", "io", "marshal", "mmap", "multiprocessing", "nt", "os", "pathlib", "pdb",
    "pickle", "pkgutil", "posix", "pty", "resource", "runpy", "select", "selectors", "shelve",
    "shutil", "signal", "site", "smtplib", "socket", "subprocess", "sys", "sysconfig",
    "telnetlib", "tempfile", "threading", "urllib", "webbrowser", "zipimport",
)
DEFAULT_FORBIDDEN_BUILTINS = (
    "__import__", "breakpoint", "compile", "eval", "exec", "globals", "input", "locals", "vars",
)
DEFAULT_FORBIDDEN_NAMES = ("__builtins__", "__loader__", "__spec__")
DEFAULT_FORBIDDEN_ATTRIBUTES = (
    "__base__", "__bases__", "__builtins__", "__class__", "__closure__", "__code__", "__dict__",
    "__func__", "__getattribute__", "__globals__", "__import__", "__loader__", "__mro__",
    "__reduce__", "__reduce_ex__", "__self__", "__spec__", "__subclasses__", "_getframe",
    "ag_code", "ag_frame", "co_code", "co_consts", "co_names", "cr_await", "cr_code",
    "cr_frame", "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "gi_code",
    "gi_frame", "gi_yieldfrom", "mro", "tb_frame", "tb_next",
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODULE = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_KINDS = ("modules", "builtins", "names", "attributes")


@dataclass(frozen=True)
class Finding:
    """One thing the scanner refuses, at ``line`` (1-based) and ``col`` (0-based, UTF-8 bytes,
    as ``ast`` reports columns)."""

    rule: str
    line: int
    col: int
    message: str
    severity: str = "error"
    filename: str = "<string>"

    def to_dict(self) -> dict:
        return {
            "rule": self.rule, "line": self.line, "col": self.col, "message": self.message,
            "severity": self.severity, "filename": self.filename,
        }

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.col}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class ScanStats:
    """Work counters of one scan: input bytes, tokens produced, units of work done."""

    bytes: int
    tokens: int
    steps: int


def _check_names(field_name: str, values: Iterable[str], modules: bool) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ManifestError(field_name, values, "a list of names, not a single string")
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise ManifestError(field_name, values, "a list of names")
    out = []
    for v in values:
        ok = isinstance(v, str) and (
            (modules and (v == "*" or _MODULE.match(v))) or (not modules and _IDENT.match(v))
        )
        if not ok:
            allowed = "ASCII dotted module names or '*'" if modules else "ASCII identifiers"
            raise ManifestError(field_name, v, allowed)
        out.append(v)
    return tuple(out)


# The largest policy file Policy.load reads; a policy is a few lists of names.
MAX_POLICY_BYTES = 1 << 20


def _read_policy_file(p: Path) -> str:
    """The text of a policy file, opened as untrusted input: no link followed, nothing but a
    regular file, never more than MAX_POLICY_BYTES read."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ManifestError("policy", str(p), f"a readable regular file ({why})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ManifestError("policy", str(p), "a regular file (not a FIFO, device, socket "
                                "or directory)")
        if st.st_size > MAX_POLICY_BYTES:
            raise ManifestError("policy", str(p), f"a file of at most {MAX_POLICY_BYTES} "
                                f"bytes (it has {st.st_size})")
        data = os.read(fd, MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise ManifestError("policy", str(p), f"a readable file ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_POLICY_BYTES:
        raise ManifestError("policy", str(p), f"a file of at most {MAX_POLICY_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError("policy", str(p), "UTF-8 text") from exc


@dataclass(frozen=True)
class Policy:
    """What the scanner refuses. Plain data: build it with :meth:`default`, :meth:`forbid`,
    :meth:`allow`, or load it from a manifest section with :meth:`from_dict` / :meth:`load`.

    A module entry covers the module and its submodules; ``"*"`` covers every module. For a
    given module the longest matching entry decides; an allowed entry wins over a forbidden
    one of the same length. ``package`` names the package the scanned code lives in, so that
    relative imports can be resolved (they are not checked when it is empty).
    """

    forbidden_modules: frozenset = field(default_factory=frozenset)
    allowed_modules: frozenset = field(default_factory=frozenset)
    forbidden_builtins: frozenset = field(default_factory=frozenset)
    forbidden_names: frozenset = field(default_factory=frozenset)
    forbidden_attributes: frozenset = field(default_factory=frozenset)
    package: str = ""

    @classmethod
    def default(cls) -> Policy:
        if cls is Policy and _DEFAULT:
            return _DEFAULT[0]
        return cls(
            forbidden_modules=frozenset(DEFAULT_FORBIDDEN_MODULES),
            forbidden_builtins=frozenset(DEFAULT_FORBIDDEN_BUILTINS),
            forbidden_names=frozenset(DEFAULT_FORBIDDEN_NAMES),
            forbidden_attributes=frozenset(DEFAULT_FORBIDDEN_ATTRIBUTES),
        )

    @classmethod
    def empty(cls) -> Policy:
        return cls()

    def forbid(self, *, modules: Iterable[str] = (), builtins: Iterable[str] = (),
               names: Iterable[str] = (), attributes: Iterable[str] = ()) -> Policy:
        """A copy that also refuses these modules, builtins, names and attributes."""
        mods = _check_names("forbid_modules", modules, True)
        return Policy(
            forbidden_modules=self.forbidden_modules | set(mods),
            allowed_modules=self.allowed_modules - set(mods),
            forbidden_builtins=self.forbidden_builtins
            | set(_check_names("forbid_builtins", builtins, False)),
            forbidden_names=self.forbidden_names | set(_check_names("forbid_names", names, False)),
            forbidden_attributes=self.forbidden_attributes
            | set(_check_names("forbid_attributes", attributes, False)),
            package=self.package,
        )

    def allow(self, *, modules: Iterable[str] = (), builtins: Iterable[str] = (),
              names: Iterable[str] = (), attributes: Iterable[str] = ()) -> Policy:
        """A copy that permits these (a module entry may re-allow part of a forbidden tree)."""
        return Policy(
            forbidden_modules=self.forbidden_modules,
            allowed_modules=self.allowed_modules | set(_check_names("allow_modules", modules, True)),
            forbidden_builtins=self.forbidden_builtins
            - set(_check_names("allow_builtins", builtins, False)),
            forbidden_names=self.forbidden_names - set(_check_names("allow_names", names, False)),
            forbidden_attributes=self.forbidden_attributes
            - set(_check_names("allow_attributes", attributes, False)),
            package=self.package,
        )

    def with_package(self, package: str) -> Policy:
        if not isinstance(package, str) or (package and not _MODULE.match(package)):
            raise ManifestError("package", package, "an ASCII dotted module name")
        return Policy(self.forbidden_modules, self.allowed_modules, self.forbidden_builtins,
                      self.forbidden_names, self.forbidden_attributes, package)

    @classmethod
    def from_dict(cls, data: Mapping, *, base: Policy | None = None) -> Policy:
        """Builds a policy from a manifest section (``extends: default`` starts from ``base``
        when given, else from :meth:`default`)::

            extends: default        # or "empty"; default when absent
            forbid_modules: [requests]
            allow_modules: [os.path]
            forbid_builtins: [open]
            allow_builtins: [input]
            forbid_names: [], allow_names: []
            forbid_attributes: [], allow_attributes: [__dict__]
            package: myplugin
        """
        if not isinstance(data, Mapping):
            raise ManifestError("scan", data, "a mapping of policy fields")
        known = {"extends", "package"} | {f"{v}_{k}" for v in ("forbid", "allow") for k in _KINDS}
        for key in data:
            if key not in known:
                raise ManifestError(str(key), data[key], "one of " + ", ".join(sorted(known)))
        extends = data.get("extends", "default")
        if extends not in ("default", "empty"):
            raise ManifestError("extends", extends, "'default' or 'empty'")
        if extends == "default":
            p = cls.default() if base is None else base
        else:
            p = cls.empty()
        p = p.allow(**{k: data.get(f"allow_{k}", ()) or () for k in _KINDS})
        p = p.forbid(**{k: data.get(f"forbid_{k}", ()) or () for k in _KINDS})
        return p.with_package(data.get("package", "") or "")

    def to_dict(self) -> dict:
        return {
            "extends": "empty",
            "forbid_modules": sorted(self.forbidden_modules),
            "allow_modules": sorted(self.allowed_modules),
            "forbid_builtins": sorted(self.forbidden_builtins),
            "forbid_names": sorted(self.forbidden_names),
            "forbid_attributes": sorted(self.forbidden_attributes),
            "package": self.package,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> Policy:
        """Loads a policy file (YAML or JSON). A plugin manifest with a ``scan:`` section works
        too. The file may come with a plugin bundle, so it is read as untrusted input: a
        regular file only (no link followed, a FIFO never waited on), at most
        ``MAX_POLICY_BYTES``, and YAML without anchors or aliases."""
        p = Path(path)
        text = _read_policy_file(p)
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                # An alias can make a few bytes of YAML into an exponential value ("billion
                # laughs"): a policy needs none, so none is accepted.
                for event in yaml.parse(text, Loader=yaml.SafeLoader):
                    if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                        raise ValueError("anchors and aliases are not allowed in a policy")
                data = yaml.safe_load(text)
        except (ValueError, ImportError, RecursionError) as exc:
            what = type(exc).__name__ if isinstance(exc, RecursionError) else str(exc)[:200]
            raise ManifestError("policy", str(p), f"valid YAML or JSON ({what})") from exc
        if isinstance(data, Mapping) and isinstance(data.get("scan"), Mapping):
            data = data["scan"]
        return cls.from_dict(data or {})

    def _compiled(self):
        cached = _COMPILED.get(self)
        if cached is None:
            from warden import _core

            cached = _core.ScanPolicy(
                sorted(self.forbidden_modules), sorted(self.allowed_modules),
                sorted(self.forbidden_builtins), sorted(self.forbidden_names),
                sorted(self.forbidden_attributes), self.package,
            )
            if len(_COMPILED) > 64:
                _COMPILED.clear()
            _COMPILED[self] = cached
        return cached

    def module_forbidden(self, module: str) -> bool:
        """The module rule in Python (the C++ core applies the same one)."""
        cur = module
        while cur:
            if cur in self.allowed_modules:
                return False
            if cur in self.forbidden_modules:
                return True
            cur = cur.rpartition(".")[0]
        if "*" in self.allowed_modules:
            return False
        return "*" in self.forbidden_modules


_COMPILED: dict = {}
_DEFAULT: list = []
_DEFAULT.append(Policy.default())  # built once: scan() without a policy is the common call


def _raw(source) -> tuple[bytes, bool]:
    if isinstance(source, str):
        return source.encode("utf-8", "surrogatepass"), True
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), False
    raise TypeError(f"scan() takes str or bytes source, not {type(source).__name__}")


def _findings(rows, filename: str) -> list[Finding]:
    return [Finding(rule, line, col, msg, "error", filename) for rule, line, col, msg in rows]


def scan(source: str | bytes, *, policy: Policy | None = None,
         filename: str = "<string>") -> list[Finding]:
    """Scans Python source. ``bytes`` are decoded as Python decodes a source file (BOM, PEP 263
    coding line); a ``str`` is taken as already decoded (its coding line is still checked)."""
    from warden import _core

    data, is_text = _raw(source)
    rows, _ = _core.scan_source(data, is_text, (policy or Policy.default())._compiled())
    return _findings(rows, filename)


def scan_stats(source: str | bytes, *, policy: Policy | None = None) -> ScanStats:
    """The work counters of scanning ``source`` (for tests that check linear time)."""
    from warden import _core

    data, is_text = _raw(source)
    _, stats = _core.scan_source(data, is_text, (policy or Policy.default())._compiled())
    return ScanStats(*stats)


DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024

_LINK_REFUSED = ("it is a symbolic link; warden does not follow links in plugin bundles "
                 "(put the file or directory itself in its place)")
_NOT_REGULAR = "; only regular files are scanned"


def _refusal(reason: str, err_no: int, max_file_bytes: int) -> str:
    """Why a file was not scanned, from the reader's reason id. Names the file's kind or the
    limit, never anything read from it."""
    if reason == "os-error":
        return f"{os.strerror(err_no)}; check the path and its permissions"
    if reason == "link":
        return _LINK_REFUSED
    if reason == "too-large":
        return (f"it is larger than {max_file_bytes} bytes, the limit per file; raise "
                "max_file_bytes if it is meant to be there")
    if reason == "no-memory":
        return "warden ran out of memory while reading or scanning it"
    kinds = {"directory": "a directory", "fifo": "a FIFO (named pipe)", "socket": "a socket",
             "char-device": "a character device", "block-device": "a block device",
             "special-file": "a special file"}
    if reason in kinds:
        return f"it is {kinds[reason]}{_NOT_REGULAR}"
    return f"the scanner failed on it ({reason})"


def _expand(paths: Sequence[str | os.PathLike]) -> list[tuple[str, tuple[str, int] | None]]:
    """The files to scan, each with None, or with the reason (id, errno) it is refused before
    it is opened.

    Nothing is followed: a named path or a directory entry that is a symbolic link is refused,
    whatever its name and wherever it points, since a link can put code the scanner never saw
    (a file outside the bundle, or a directory whose contents change later) under a name the
    plugin imports. Directories are walked for ``*.py`` files without descending through links;
    one that cannot be listed is refused rather than skipped, so that nothing hides in it.
    """
    out: list[tuple[str, tuple[str, int] | None]] = []
    for p in paths:
        s = os.fspath(p)
        try:
            st = os.lstat(s)
        except OSError as exc:
            out.append((s, ("os-error", exc.errno or 0)))
            continue
        if stat.S_ISLNK(st.st_mode):
            out.append((s, ("link", 0)))
        elif stat.S_ISDIR(st.st_mode):
            _walk(s, out)
        else:
            out.append((s, None))  # the reader refuses what is not a regular file
    return out


def _walk(top: str, out: list) -> None:
    # Depth first, each directory's entries by name and then its subdirectories, as os.walk
    # with sorted lists gives; a stack rather than recursion, since a bundle can nest deeply.
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.append((d, ("os-error", exc.errno or 0)))
            continue
        subdirs = []
        for e in entries:
            try:
                if e.is_symlink():
                    out.append((e.path, ("link", 0)))
                elif e.is_dir(follow_symlinks=False):
                    subdirs.append(e.path)
                elif e.name.endswith(".py"):
                    out.append((e.path, None))
            except OSError as exc:
                out.append((e.path, ("os-error", exc.errno or 0)))
        stack.extend(reversed(subdirs))


def scan_paths(paths: Iterable[str | os.PathLike], *, policy: Policy | None = None,
               threads: int | None = None,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict[str, list[Finding]]:
    """Scans files (directories are walked for ``*.py``) on C++ threads with the GIL released.

    Every path is treated as hostile: no symbolic link is followed (a link, named or met in a
    walked directory, is refused), only regular files are read (a FIFO or a device is refused
    without blocking), and a file larger than ``max_file_bytes`` is refused. A file that is
    refused or cannot be read gets one ``file-unreadable`` finding at line 0 whose message names
    the path and the reason."""
    from warden import _core

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if (not isinstance(max_file_bytes, int) or isinstance(max_file_bytes, bool)
            or not 0 < max_file_bytes < 2**63):
        raise ValueError(f"max_file_bytes must be a positive number of bytes, got "
                         f"{max_file_bytes!r}")
    entries = _expand(list(paths))
    files = [path for path, refused in entries if refused is None]
    rows = iter(_core.scan_paths(files, (policy or Policy.default())._compiled(), threads or 0,
                                 max_file_bytes))
    out: dict[str, list[Finding]] = {}
    for path, refused in entries:
        if refused is None:
            ok, payload = next(rows)
            if ok:
                out[path] = _findings(cast("list[tuple[str, int, int, str]]", payload), path)
                continue
            refused = cast("tuple[str, int]", payload)  # (reason id, errno) of a refused file
        reason = _refusal(refused[0], refused[1], max_file_bytes)
        out[path] = [Finding("file-unreadable", 0, 0, f"cannot read {path}: {reason}", "error",
                             path)]
    return out


class _ScanPackage(types.ModuleType):
    """``warden.scan`` names both this package and the function :func:`scan`: the import
    system binds the package as the attribute ``scan`` of ``warden``, so the package is made
    callable and calling it scans."""

    def __call__(self, source: str | bytes, *, policy: Policy | None = None,
                 filename: str = "<string>") -> list[Finding]:
        return scan(source, policy=policy, filename=filename)


sys.modules[__name__].__class__ = _ScanPackage
