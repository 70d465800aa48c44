"""The warden command line: one module per subcommand (run, doctor, scan, images, demo, serve,
keys, fuzz), each with ``add_parser(subparsers)`` and the function that runs it; here only
their assembly and ``main``, which also decides where the library's log goes
(warden.cli.logs)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]

_VERBOSE_HELP = "say more on stderr: -v info, -vv debug (or set WARDEN_LOG=debug)"


def build_parser() -> argparse.ArgumentParser:
    from warden._version import version
    from warden.cli import demo, doctor, fuzz, images, keys, run, scan, serve

    p = argparse.ArgumentParser(prog="warden", description="kernel-enforced sandboxes")
    p.add_argument("--version", action="version", version=f"warden {version()}")
    p.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE_HELP)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for command in (run, doctor, scan, images, demo, fuzz, serve, keys):
        command.add_parser(sub)
    # Also after the subcommand (`warden run -v -- ...`); SUPPRESS keeps a -v given before it.
    for parser in sub.choices.values():
        parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                            help=_VERBOSE_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    from warden.cli import logs

    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
