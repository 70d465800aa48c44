"""`warden keys create|list|revoke`: the API keys of `warden serve`, in its state directory."""

from __future__ import annotations

import argparse
import sys
import time

from warden.errors import WardenError

__all__ = ["add_parser", "state_dir_flag"]


def _store(args: argparse.Namespace):
    from warden.service.keys import KeyStore, state_dir

    return KeyStore(state_dir(args.state_dir))


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _cmd_create(args: argparse.Namespace) -> int:
    try:
        info, text = _store(args).create(args.tenant, args.scope, args.expires)
    except (WardenError, OSError) as exc:
        print(f"warden keys create: {exc}", file=sys.stderr)
        return 1
    print(f"key {info.id} for tenant {info.tenant}, scope {info.scope}, expires "
          f"{_when(info.expires)}; it is shown this once:", file=sys.stderr)
    print(text)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    try:
        keys = _store(args).list()
    except (WardenError, OSError) as exc:
        print(f"warden keys list: {exc}", file=sys.stderr)
        return 1
    now = time.time()
    print(f"{'ID':<13} {'TENANT':<20} {'SCOPE':<10} {'CREATED':<21} {'EXPIRES':<21} STATE")
    for k in keys:
        state = "revoked" if k.revoked else "live" if k.live(now) else "expired"
        print(f"{k.id:<13} {k.tenant:<20} {k.scope:<10} {_when(k.created):<21} "
              f"{_when(k.expires):<21} {state}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    try:
        done = _store(args).revoke(args.key_id)
    except (WardenError, OSError) as exc:
        print(f"warden keys revoke: {exc}", file=sys.stderr)
        return 1
    if not done:
        print(f"warden keys revoke: no live key {args.key_id!r}; see `warden keys list`",
              file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 < value <= 3650:
        raise argparse.ArgumentTypeError(f"{text} days: give days above 0 up to 3650")
    return value


def state_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="where the keys live (default $WARDEN_SERVICE_DIR, else "
                             "/var/lib/warden)")


def add_parser(subparsers) -> None:
    from warden.service.keys import SCOPES

    p = subparsers.add_parser("keys", help="API keys of `warden serve`")
    sub = p.add_subparsers(dest="keys_command", required=True)
    c = sub.add_parser("create", help="make a key and print it (once)")
    c.add_argument("--tenant", required=True, help="the tenant the key acts for")
    c.add_argument("--scope", choices=SCOPES, default="sandboxes",
                   help="read: GET routes only; sandboxes: the sandbox routes; admin: all")
    c.add_argument("--expires", type=_days, default=None, metavar="DAYS",
                   help="days until it stops working (default never)")
    state_dir_flag(c)
    c.set_defaults(func=_cmd_create)
    ls = sub.add_parser("list", help="the keys, without their text (never kept)")
    state_dir_flag(ls)
    ls.set_defaults(func=_cmd_list)
    r = sub.add_parser("revoke", help="stop a key from working, at once")
    r.add_argument("key_id", help="the key's id (from `warden keys list`) or the key itself")
    state_dir_flag(r)
    r.set_defaults(func=_cmd_revoke)
