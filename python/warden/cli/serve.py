"""`warden serve`: sandboxes over HTTP for the tenants of the keys in the state directory."""

from __future__ import annotations

import argparse
import sys

from warden.cli.keys import state_dir_flag
from warden.errors import WardenError

__all__ = ["add_parser"]


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from warden.service import server
    except ImportError as exc:
        print(f"warden serve: {exc}", file=sys.stderr)
        return 1
    try:
        server.serve(args.host, args.port, args.state_dir, args.config)
    except (WardenError, OSError) as exc:
        print(f"warden serve: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve sandboxes over HTTP (extra warden[server])")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=_port, default=8787, help="TCP port (8787)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="per-tenant quotas, YAML or TOML (default: the built-in quotas)")
    state_dir_flag(p)
    p.set_defaults(func=_cmd_serve)
