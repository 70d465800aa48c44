"""atheris target: plugin.yaml parsing and validation.

Any input must either give a Manifest whose limits warden.Limits accepts, or raise
ManifestError; nothing else may escape (no YAMLError, RecursionError, TypeError...).

    python3 fuzz/atheris_manifest.py fuzz/corpus/manifest -max_total_time=60
"""

from __future__ import annotations

import sys

import atheris
import warden_path  # noqa: F401 - sys.path first, before warden is imported

# Only the decoder under test (and the library it drives) is instrumented: the rest of the
# package is not this target's input surface, and instrumenting it only slows the loop.
with atheris.instrument_imports(include=["warden.plugins.manifest", "warden.plugins.yaml_safe",
                                         "yaml"]):
    from warden.errors import ManifestError
    from warden.plugins.manifest import parse_manifest


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
