"""atheris target: plugin.yaml parsing and validation.

Any input must either give a Manifest whose limits warden.Limits accepts, or raise
ManifestError; nothing else may escape (no YAMLError, RecursionError, TypeError...).

    python3 fuzz/atheris_manifest.py fuzz/corpus/manifest -max_total_time=60
"""

from __future__ import annotations

import os
import sys

import atheris



def _installed_warden() -> bool:
    """Whether an installed warden with its native module is importable, found without
    importing it (an import now would escape the instrumentation below)."""
    import importlib.util

    spec = importlib.util.find_spec("warden")
    return bool(spec and spec.submodule_search_locations and any(
        name.startswith("_core.") for loc in spec.submodule_search_locations
        for name in os.listdir(loc)))


# The installed package when there is one (CI's venv); else the source tree, which needs
# scripts/dev-build for warden._core.
if not _installed_warden():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

# Only the decoder under test (and the library it drives) is instrumented: the rest of the
# package is not this target's input surface, and instrumenting it only slows the loop.
with atheris.instrument_imports(include=["warden.manifest", "yaml"]):
    from warden.errors import ManifestError
    from warden.manifest import parse_manifest


def TestOneInput(data: bytes) -> None:
    try:
        manifest = parse_manifest(data)
    except ManifestError as exc:
        if not exc.field or not exc.allowed:
            raise AssertionError(f"ManifestError without field or allowed: {exc}") from exc
        return
    manifest.to_limits()


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
