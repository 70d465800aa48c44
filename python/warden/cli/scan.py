"""``warden scan PATH... [--json] [--policy FILE] [--max-file-bytes N]``: scan Python files
before running them.

``--policy`` names a policy file (YAML or JSON, ``Policy.load``) or a plugin: its directory,
its plugin.yaml, or any YAML manifest (a mapping with a ``name``, which no policy file has).
A plugin's policy is the one Engine.load scans it with (``scan_policy``: the ``scan:`` section
or warden's default, with ``allowed_imports`` allowed), so both reach the same verdict.

Exit status: 0 when nothing was found, 1 when something was, 2 when an input could not be read
or was refused (a symbolic link, not a regular file, larger than the limit), or the policy file
or an option is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from warden.errors import ManifestError
from warden.plugins import yaml_safe
from warden.plugins.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    load_manifest,
    read_manifest,
    scan_policy,
)
from warden.scan import DEFAULT_MAX_FILE_BYTES, Policy, scan_paths

__all__ = ["EXIT_CLEAN", "EXIT_FOUND", "EXIT_UNREADABLE", "add_parser", "load_policy", "run"]

EXIT_CLEAN, EXIT_FOUND, EXIT_UNREADABLE = 0, 1, 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scan",
        help="scan Python source for imports, builtins and introspection the policy refuses",
        description="Scan Python files (directories are walked for *.py). Exit 0 when clean, "
        "1 when something was found, 2 when an input could not be read or was refused (symbolic "
        "links are not followed, only regular files are read, and files over --max-file-bytes "
        "are refused).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to scan")
    p.add_argument("--json", action="store_true", help="print findings as JSON")
    p.add_argument("--policy", metavar="FILE", help="policy file (YAML or JSON), or a plugin "
                   "(its directory or plugin.yaml) to scan with the policy Engine.load applies "
                   "to it: its scan: section, with allowed_imports allowed; default: warden's "
                   "default policy")
    p.add_argument("--threads", type=int, default=None, help="scanner threads (default: CPUs)")
    p.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES, metavar="N",
                   help="refuse files larger than N bytes (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def _is_manifest(path: str) -> bool:
    """A plugin's directory or plugin.yaml, or a YAML mapping with a name."""
    if os.path.isdir(path) or os.path.basename(path) == MANIFEST_NAME:
        return True
    if path.endswith(".json"):
        return False
    try:
        data = yaml_safe.load(read_manifest(path), source=path, max_bytes=MAX_MANIFEST_BYTES)
    except ManifestError:
        return False  # Policy.load reports what is wrong with it
    return isinstance(data, dict) and "name" in data


def load_policy(path: str | None) -> Policy:
    """The policy ``--policy`` names (see the module's docstring)."""
    if path is None:
        return Policy.default()
    if _is_manifest(path):
        return scan_policy(load_manifest(path))
    return Policy.load(path)


def run(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
    except ManifestError as exc:
        print(f"warden scan: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    missing = [p for p in args.paths if not os.path.exists(p)]
    try:
        results = scan_paths(args.paths, policy=policy, threads=args.threads,
                             max_file_bytes=args.max_file_bytes)
    except ValueError as exc:
        print(f"warden scan: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    for p in missing:
        results.setdefault(p, [])
    unreadable = any(f.rule == "file-unreadable" for fs in results.values() for f in fs)
    found = any(f.rule != "file-unreadable" for fs in results.values() for f in fs)
    if args.json:
        json.dump({path: [f.to_dict() for f in fs] for path, fs in results.items()},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        n = 0
        for fs in results.values():
            for f in fs:
                print(f, file=sys.stderr if f.rule == "file-unreadable" else sys.stdout)
                n += 1
        print(f"{n} finding(s) in {len(results)} file(s)", file=sys.stderr)
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_FOUND if found else EXIT_CLEAN

