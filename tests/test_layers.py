"""The layout's promises, checked from a fresh interpreter and from the source: the face loads
nothing, the guest loads only the wire protocol and the errors, and no module of the package
imports the face (the import-linter contracts in pyproject.toml check the rest)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import warden

PACKAGE = Path(warden.__file__).resolve().parent
PARENT = str(PACKAGE.parent)

# What a sandbox's worker loads of warden, exactly: a new module here is code that every
# sandbox runs, so the list changes only on purpose.
GUEST_MODULES = {
    "warden", "warden._core", "warden.errors",
    "warden.guest", "warden.guest.command", "warden.guest.files", "warden.guest.toolops",
    "warden.guest.worker", "warden.guest.cmdargs", "warden.guest.emit", "warden.guest.procs",
    "warden.guest.procops", "warden.guest.fileops",
    "warden.wire", "warden.wire.bounds", "warden.wire.channel", "warden.wire.codec",
    "warden.wire.large",
    "warden.wire.ops", "warden.wire.paths", "warden.wire.replies", "warden.wire.streams",
    "warden.wire.entries",
}


def _loaded_after(code: str) -> set[str]:
    probe = (f"import sys; sys.path.insert(0, {PARENT!r}); before = set(sys.modules); {code}; "
             "print('\\n'.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                         check=True)
    return set(out.stdout.split())


def test_importing_warden_loads_no_module_of_warden_but_the_face():
    loaded = _loaded_after("import warden")
    assert {m for m in loaded if m.startswith("warden")} == {"warden"}
    # Nor the standard library's heavier parts: typing, re, asyncio, threading.
    assert not loaded & {"typing", "re", "asyncio", "threading", "msgpack", "yaml"}


def test_a_name_of_the_face_loads_its_module_on_first_use():
    loaded = _loaded_after("import warden; warden.Limits")
    assert "warden.spec.limits" in loaded
    assert not any(m.startswith(("warden.providers", "warden.plugins", "warden.sandboxes"))
                   for m in loaded)


def test_the_guest_loads_exactly_the_wire_protocol_and_the_errors():
    loaded = _loaded_after("import warden.guest.worker, warden.guest.toolops")
    assert {m for m in loaded if m.startswith("warden")} == GUEST_MODULES


def test_the_container_program_loads_what_the_guest_does_and_itself():
    loaded = _loaded_after("import warden.guest.container")
    assert {m for m in loaded if m.startswith("warden")} == GUEST_MODULES | {
        "warden.guest.container"}


def _imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def test_no_module_of_the_package_imports_the_face():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")} | subpackages | {"_core"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue
        for line, module, names in _imports_of(path):
            if module == "warden" and (not names or set(names) - modules):
                offenders.append(f"{path.relative_to(PACKAGE)}:{line} imports "
                                 f"{sorted(set(names) - modules) or 'warden'} from the face")
    assert not offenders, "\n".join(offenders)


def test_no_module_is_over_500_lines():
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500]
    assert not long, long


def test_no_function_is_over_60_lines():
    long = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 60:
                    long.append(f"{p.relative_to(PACKAGE)}:{node.lineno} {node.name}: {n}")
    assert not long, long


def test_the_version_is_written_once():
    root = PACKAGE.parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        text = pyproject.read_text()
        assert f'version = "{warden.__version__}"' in text
    hits = [str(p) for p in PACKAGE.rglob("*.py")
            if "__version__ = " in p.read_text() or 'version = "' in p.read_text()]
    assert not hits, hits
    assert os.path.exists(PACKAGE / "_version.py")
