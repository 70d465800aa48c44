"""Every example of README.md is run: each ```python block as a script of its own, in a fresh
interpreter in a temporary directory where the repository's examples/ is reachable, in real
sandboxes; each ```yaml block must be a valid plugin.yaml.

Conventions a README block may use:
- a statement ending in ``# raises NAME`` must raise NAME (an error of warden's, or a
  built-in one): the test checks that it does;
- a block whose first line is ``# requires: docker`` runs where a Docker engine answers (the
  one at DOCKER_HOST, or a private dockerd started as the provider suite starts its own); it
  skips elsewhere, and under CI=true a missing engine is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import warden
from warden.plugins.manifest import parse_manifest

from tests.conftest import IN_CI, require

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_RAISES = re.compile(r"^(?P<indent>[ \t]*)(?P<stmt>\S.*?)\s*#\s*raises\s+(?P<name>\w+)\s*$")
_NEEDS_DOCKER = re.compile(r"#\s*requires:\s*docker\b")


def _blocks(lang: str) -> list[tuple[int, str]]:
    """(line of the opening fence, text) of every ```lang block."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(2))
            for m in _FENCE.finditer(text) if m.group(1) == lang]


def _checked(code: str) -> str:
    """``code`` with every ``stmt  # raises NAME`` line made into a check that it raises."""
    out = ["import builtins as _readme_builtins, warden as _readme_warden",
           "def _readme_error(name):",
           "    return getattr(_readme_warden, name, None) or getattr(_readme_builtins, name)",
           ""]
    for line in code.splitlines():
        m = _RAISES.match(line)
        if m is None:
            out.append(line)
            continue
        ind, stmt, name = m.group("indent"), m.group("stmt"), m.group("name")
        out += [f"{ind}try:", f"{ind}    {stmt}", f"{ind}except _readme_error({name!r}):",
                f"{ind}    pass", f"{ind}else:",
                f"{ind}    raise AssertionError({f'README: expected {name} from: {stmt}'!r})"]
    return "\n".join(out) + "\n"


PYTHON_BLOCKS = _blocks("python")


def test_the_readme_has_python_examples():
    assert PYTHON_BLOCKS, f"no ```python block found in {README}"


def test_the_raises_convention_checks_the_error():
    code = _checked("x = {}\nx['k']  # raises KeyError\nok = 1  # raises KeyError\n")
    with pytest.raises(AssertionError, match="expected KeyError from: ok = 1"):
        exec(compile(code, "<readme>", "exec"), {})


@pytest.fixture(scope="session")
def readme_docker():
    """A Docker engine for the blocks that need one, as the provider suite finds or starts
    its own (tests/providers/conftest.py)."""
    from tests.providers.conftest import DockerEngine, _engine_answers

    engine = DockerEngine()
    if os.environ.get("DOCKER_HOST") and _engine_answers():
        engine.available = True
    elif (IN_CI or os.environ.get("WARDEN_TEST_DOCKER") == "1") and os.geteuid() == 0:
        engine.start()
    if engine.available:
        from warden.providers.docker import images

        images.ensure_image()
    try:
        yield engine
    finally:
        if engine.started:
            engine.stop()


@pytest.mark.parametrize(("line", "code"), PYTHON_BLOCKS,
                         ids=[f"README.md:{line}" for line, _ in PYTHON_BLOCKS])
def test_python_example_runs(line, code, tmp_path, request):
    if _NEEDS_DOCKER.search(code.split("\n", 1)[0]):
        engine = request.getfixturevalue("readme_docker")
        require(engine.available, engine.why or "no Docker engine: set DOCKER_HOST, or "
                "WARDEN_TEST_DOCKER=1 to start a private dockerd")
    require(os.geteuid() == 0, "the README's examples run real sandboxes (root for cgroups)")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = tmp_path / "readme_example.py"
    script.write_text(_checked(textwrap.dedent(code)), encoding="utf-8")
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, (f"the example at README.md:{line} failed:\n{r.stderr[-4000:]}"
                               f"\n--- stdout:\n{r.stdout[-2000:]}")


@pytest.mark.parametrize(("line", "text"), _blocks("yaml"),
                         ids=[f"README.md:{line}" for line, _ in _blocks("yaml")])
def test_yaml_example_is_a_valid_manifest(line, text):
    manifest = parse_manifest(text, source=f"README.md:{line}")
    assert manifest.name
