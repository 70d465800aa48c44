"""Where the library's log goes when warden runs as a command: stderr.

The level is ``-v`` (info) or ``-vv`` (debug) when given, else ``WARDEN_LOG`` (a level name
such as ``debug`` or ``info``, or a number), else warnings only. The library itself only logs
(logger ``warden``); this is the one place that decides where that goes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

__all__ = ["ENV", "configure"]

ENV = "WARDEN_LOG"
_NAMES = ("debug", "info", "warning", "error", "critical")


def _level_from(text: str) -> int | None:
    text = text.strip()
    if text.isdigit():
        return int(text)
    if text.lower() in _NAMES:
        return getattr(logging, text.upper())
    return None


def configure(verbose: int, environ: Mapping[str, str] = os.environ) -> int:
    """Sends logger ``warden`` to stderr at the level asked for; returns that level."""
    bad = None
    if verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    else:
        level = logging.WARNING
        if environ.get(ENV):
            found = _level_from(environ[ENV])
            if found is None:
                bad = environ[ENV]
            else:
                level = found
    handler = logging.StreamHandler(sys.stderr)
    # At debug level, which module spoke matters; otherwise it is noise.
    fmt = "%(name)s: %(levelname)s: %(message)s" if level <= logging.DEBUG else \
        "warden: %(levelname)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    log = logging.getLogger("warden")
    log.addHandler(handler)
    log.setLevel(level)
    # Shown once, through the log itself: a command should not fail over how chatty it is.
    if bad is not None:
        log.warning("%s=%r is not a level; using warning (use one of %s, or a number)",
                    ENV, bad, ", ".join(_NAMES))
    return level
