"""``warden doctor [--json]``: what this host supports, before anything runs.

Exit status 0 when the default sandbox can run here, 1 when it cannot (the report says which
part is missing).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("doctor", help="what this host supports",
                              description="Report what this host supports. Exit 0 when the "
                              "default sandbox can run here, 1 when it cannot.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from warden.host import doctor

    report = doctor.report()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(doctor.format_report(report))
    return 0 if report.get("ok") else 1
