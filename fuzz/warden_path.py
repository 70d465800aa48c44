"""Puts the warden the fuzz targets test on sys.path, without importing it.

The installed package when there is one (CI's venv); else the source tree, which needs
scripts/dev-build for warden._core. Nothing of warden may be imported here: atheris only
instruments modules imported inside its instrument_imports() block, later.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _installed_warden() -> bool:
    spec = importlib.util.find_spec("warden")
    return bool(spec and spec.submodule_search_locations and any(
        name.startswith("_core.") for loc in spec.submodule_search_locations
        for name in os.listdir(loc)))


if not _installed_warden():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
