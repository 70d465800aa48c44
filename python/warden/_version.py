"""The version of warden, written once in pyproject.toml and read from there: from the
installed distribution's metadata, or, in a source checkout, from pyproject.toml itself."""

from __future__ import annotations

import functools
import os
import re

__all__ = ["version"]


@functools.lru_cache(maxsize=1)
def version() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    pyproject = os.path.join(os.path.dirname(os.path.dirname(here)), "pyproject.toml")
    if os.path.isfile(pyproject):
        # A source checkout (PYTHONPATH=python): its own pyproject wins over whatever
        # version of warden is installed elsewhere.
        with open(pyproject, encoding="utf-8") as f:
            found = re.search(r'(?m)^version\s*=\s*"([^"]+)"', f.read())
        if found:
            return found.group(1)
    # Imported only for an installed warden: the import alone takes about 10 ms.
    from importlib import metadata

    try:
        return metadata.version("warden")
    except metadata.PackageNotFoundError:
        return "0+unknown"
