"""A handle's provider state is its provider's alone: a typed object per provider, reached only
through that provider's ``state_of``, and named by no module outside warden.providers."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from warden.errors import InvalidArgument
from warden.providers.base import SandboxHandle, SandboxSpec
from warden.providers.docker import state as docker_state
from warden.providers.native import state as native_state

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "warden"
PROVIDERS = PACKAGE / "providers"


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "examples" not in p.parts)


def _state_modules(tree: ast.AST) -> list[str]:
    """Every warden.providers.<name>.state module that ``tree`` imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found += [n for n in names
                  if n.startswith("warden.providers.") and n.split(".")[-1] == "state"]
    return found


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _reads_of_state(tree: ast.AST) -> list[int]:
    """Lines that reach a handle's provider state: any ``._state`` or ``"_state"`` (getattr),
    and ``.state`` of something named like a handle (the field's old, public name)."""
    lines = []
    for node in ast.walk(tree):
        named = isinstance(node, ast.Attribute) and (node.attr == "_state" or (
            node.attr == "state" and ("handle" in _name(node.value).lower()
                                      or _name(node.value) == "h")))
        if named or (isinstance(node, ast.Constant) and node.value == "_state"):
            lines.append(node.lineno)
    return lines


def test_the_handle_has_no_public_state():
    names = [f.name for f in dataclasses.fields(SandboxHandle)]
    assert "_state" in names and "state" not in names
    h = SandboxHandle(id="x", provider="p", spec=SandboxSpec(), labels={})
    assert "_state" not in repr(h)


def test_no_module_outside_the_providers_reads_provider_state():
    outside = {}
    for path in _sources():
        if PROVIDERS in path.parents:
            continue
        tree = ast.parse(path.read_text(), str(path))
        bad = [f"line {n}" for n in _reads_of_state(tree)] + _state_modules(tree)
        if bad:
            outside[str(path.relative_to(PACKAGE))] = bad
    assert outside == {}


def test_inside_the_providers_only_state_of_reads_a_handle_s_state():
    # Every other module of a provider asks its own state_of, which refuses another
    # provider's handle; a provider never imports another provider's state.
    found = {}
    for path in sorted(PROVIDERS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(PROVIDERS)
        reads = [] if rel.name == "state.py" else _reads_of_state(tree)
        own = f"warden.providers.{rel.parts[0]}.state" if len(rel.parts) > 1 else None
        foreign = [m for m in _state_modules(tree) if not m.startswith(own or "\0")]
        if reads or foreign:
            found[str(rel)] = reads + foreign
    assert found == {}


@pytest.mark.parametrize("module", [native_state, docker_state])
def test_a_handle_of_another_provider_is_refused(module):
    h = SandboxHandle(id="sb-1", provider="elsewhere", spec=SandboxSpec(), labels={},
                      _state=object())
    with pytest.raises(InvalidArgument) as info:
        module.state_of(h)
    assert "sb-1" in str(info.value) and "'elsewhere'" in str(info.value)
