"""The warden command line: run, doctor, scan, demo."""

from __future__ import annotations

import argparse
import signal
import sys

__all__ = ["main"]


def _size_mb(text: str) -> int:
    from warden.spec.limits import parse_size

    try:
        return max(1, parse_size(text) >> 20)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    import warden

    if not args.command:
        print("warden run: name a command after --", file=sys.stderr)
        return 2
    kw = {}
    if args.memory is not None:
        kw["memory_mb"] = args.memory
    if args.pids is not None:
        kw["pids"] = args.pids
    if args.cpus is not None:
        kw["cpus"] = args.cpus
    if args.timeout is not None:
        kw["wall_time_s"] = args.timeout
    if args.disk is not None:
        kw["disk_mb"] = args.disk
    try:
        limits = warden.Limits(**kw)
    except ValueError as exc:
        print(f"warden run: {exc}", file=sys.stderr)
        return 2
    stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    try:
        res = warden.run(args.command, stdin=stdin, limits=limits, network=args.network,
                         provider=args.provider)
    except warden.WardenError as exc:
        print(f"warden run: {exc}", file=sys.stderr)
        return 125
    sys.stdout.buffer.write(res.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(res.stderr)
    if res.stdout_truncated or res.stderr_truncated:
        print("warden: output was truncated at the cap", file=sys.stderr)
    if res.reason != "exited":
        hit = f" (limits reached: {', '.join(sorted(res.limits_hit))})" if res.limits_hit else ""
        print(f"warden: {res.reason}{hit}", file=sys.stderr)
    elif res.limits_hit:
        print(f"warden: limits reached: {', '.join(sorted(res.limits_hit))}", file=sys.stderr)
    if res.exit_code is not None:
        return res.exit_code
    return 128 + (res.signal or signal.SIGKILL)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from warden.host import doctor

    report = doctor.report()
    if args.json:
        import json

        print(json.dumps(report, indent=2, default=str))
    else:
        print(doctor.format_report(report))
    return 0 if report.get("ok") else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from warden.cli import demo

    return demo.main(records=args.records, batch=args.batch)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="warden", description="kernel-enforced sandboxes")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run one command in a fresh sandbox")
    r.add_argument("--memory", type=_size_mb, help="memory limit, e.g. 128M (default 256M)")
    r.add_argument("--pids", type=int, help="most processes at once (default 64)")
    r.add_argument("--cpus", type=float, help="CPU share, e.g. 0.5 (default 1.0)")
    r.add_argument("--timeout", type=float, help="wall time limit in seconds (default 10)")
    r.add_argument("--disk", type=_size_mb, help="writable space, e.g. 64M (default 64M)")
    r.add_argument("--network", default="none", help="network policy (default none)")
    r.add_argument("--provider", default="native", help="native, docker or auto")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    r.set_defaults(func=_cmd_run)

    d = sub.add_parser("doctor", help="what this host supports")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_doctor)

    from warden.cli import images as cli_images
    from warden.cli import scan as cli_scan

    cli_scan.add_parser(sub)
    cli_images.add_parser(sub)

    m = sub.add_parser("demo", help="the transformation engine, end to end")
    m.add_argument("--records", type=int, default=1_000_000)
    m.add_argument("--batch", type=int, default=10_000)
    m.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
