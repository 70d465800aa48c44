"""``warden run [FLAGS] -- CMD ARGS...``: one command in a fresh sandbox, torn down after.

The exit status is a shell's: the command's own; 128+N when signal N killed it (named on
stderr); 126 when the command cannot be executed and 127 when it is not there (warden.run
reports both as the command's exit, with a line on its stderr); 125 when warden itself failed;
2 when the command line is wrong.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING

from warden.cli import flags

if TYPE_CHECKING:
    from warden.spec.network import NetworkPolicy

__all__ = ["EXIT_USAGE", "EXIT_WARDEN", "add_parser", "exit_status", "run", "signal_name"]

EXIT_USAGE, EXIT_WARDEN = 2, 125

def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run", help="run one command in a fresh sandbox",
        description="Run CMD in a fresh sandbox and tear it down when it ends. Sizes are "
        "whole MiB (64M, 1G; a bare number is MiB).",
        epilog="exit status: the command's own; 128+N when signal N killed it; 126 when it "
        "cannot be executed, 127 when it is not there; 125 when warden failed; 2 for a wrong "
        "command line")
    for flag, field, kind, metavar, text in flags.LIMIT_FLAGS:
        p.add_argument(flag, dest=field, type=kind, metavar=metavar, help=text)
    p.add_argument("--network", type=flags.network, default="none", metavar="POLICY",
                   help="network policy (default none: loopback only)")
    p.add_argument("--allow", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow connections to HOST (a name, *.domain or CIDR; :PORT or :LO-HI) "
                   "through warden's egress proxy (repeatable; makes a NetworkPolicy)")
    p.add_argument("--deny", action="append", default=[], metavar="HOST[:PORT]",
                   help="refuse HOST even where --allow would allow it (repeatable)")
    p.add_argument("--resolve", type=flags.env_pair, action="append", default=[],
                   metavar="NAME=ADDR", help="pin NAME to the address ADDR (repeatable)")
    p.add_argument("--egress-netns", metavar="PATH",
                   help="network namespace to dial out from (default: warden's own)")
    p.add_argument("--mode", choices=("proxy", "transparent"), default=None,
                   help="how the command reaches the allowed hosts: proxy (default: proxy "
                   "variables point at warden's egress proxy) or transparent (every TCP "
                   "connection and DNS query goes through warden, for programs that ignore "
                   "proxy settings; needs root and pyroute2)")
    p.add_argument("--max-connections", type=flags.count, metavar="N",
                   help="most connections open at once through warden (default 64)")
    p.add_argument("--max-bytes", type=flags.byte_count, metavar="SIZE",
                   help="bytes up and down the command may move in all, e.g. 50M (a bare "
                   "number is bytes; default: no cap)")
    p.add_argument("--provider", type=flags.provider, default="native", metavar="NAME",
                   help="native (default), docker, or auto")
    p.add_argument("--env", type=flags.env_pair, action="append", default=[],
                   metavar="NAME=VALUE", help="set a variable for the command (repeatable)")
    p.add_argument("--cwd", type=flags.cwd, metavar="DIR",
                   help="working directory inside the sandbox (default /workspace)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                   help="the command and its arguments")
    p.set_defaults(func=run)
    return p


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_status(res) -> int:
    """A shell's exit status for ExecResult ``res``."""
    if res.exit_code is not None:
        return res.exit_code
    return 128 + (res.signal or signal.SIGKILL)


def _notes(res, limits) -> list[str]:
    """What warden has to say about how the command ended, one line each."""
    notes = []
    if res.stdout_truncated or res.stderr_truncated:
        notes.append("output was truncated at the cap")
    if res.signal is not None:
        why = {
            "timeout": f"timeout: the wall time limit of {limits.wall_time_s:g}s passed",
            "memory": f"memory: out of memory at the limit of {limits.memory_mb}M",
            "seccomp": "seccomp: a system call the sandbox forbids",
        }.get(res.reason)
        notes.append(f"killed by {signal_name(res.signal)}" + (f" ({why})" if why else ""))
    if res.limits_hit:
        notes.append(f"limits reached: {', '.join(sorted(res.limits_hit))}")
    return notes


# The flags that make a NetworkPolicy (any one of them does), with its field names.
_POLICY_FLAGS = ("allow", "deny", "resolve", "egress_netns", "mode", "max_connections",
                 "max_bytes")


def _network(args: argparse.Namespace) -> str | NetworkPolicy:
    """--network, or the NetworkPolicy that --allow and its companions describe."""
    if not any(getattr(args, f) for f in _POLICY_FLAGS):
        return args.network
    from warden.spec.network import NetworkPolicy

    return NetworkPolicy(allow=tuple(args.allow), deny=tuple(args.deny),
                         resolve=dict(args.resolve), egress_netns=args.egress_netns,
                         mode=args.mode or "proxy", max_connections=args.max_connections,
                         max_bytes=args.max_bytes)


def run(args: argparse.Namespace) -> int:
    from warden.errors import InvalidArgument, WardenError
    from warden.sandboxes.run import run as run_sandboxed
    from warden.spec.limits import Limits

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("warden run: name a command after --, e.g. warden run -- ls -l", file=sys.stderr)
        return EXIT_USAGE
    # Every flag was checked against the same bounds as Limits, so this cannot refuse.
    limits = Limits(**{field: getattr(args, field) for _, field, *_ in flags.LIMIT_FLAGS
                       if getattr(args, field) is not None})
    stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    try:
        res = run_sandboxed(command, stdin=stdin, limits=limits, network=_network(args),
                            env=dict(args.env), cwd=args.cwd, provider=args.provider)
    except InvalidArgument as exc:
        print(f"warden run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WardenError as exc:
        print(f"warden run: {exc}", file=sys.stderr)
        return EXIT_WARDEN
    sys.stdout.buffer.write(res.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(res.stderr)
    sys.stderr.flush()
    for note in _notes(res, limits):
        print(f"warden: {note}", file=sys.stderr)
    return exit_status(res)
