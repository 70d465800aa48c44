#!/usr/bin/env bash
# The static checks of CI: ruff, mypy (strict for errors, spec and wire) and the import rules of
# DESIGN.md as import-linter contracts. Runs on the source tree; every check runs, any failure
# fails.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${VENV_BIN:-.venv/bin}
status=0
"$bin/ruff" check python tests bench fuzz scripts || status=1
PYTHONPATH=python "$bin/mypy" || status=1
PYTHONPATH=python "$bin/lint-imports" --no-cache || status=1
exit $status
