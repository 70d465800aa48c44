"""`warden images build`: warden's own container image from this host's Python, no registry."""

from __future__ import annotations

import argparse
import sys

from warden.errors import WardenError

__all__ = ["add_parser"]


def _cmd_build(args: argparse.Namespace) -> int:
    from warden.providers.docker import images

    print("warden images build: from this host's Python; this takes a while (-v shows "
          "progress)", file=sys.stderr)
    try:
        tag = images.build_image(args.tag)
    except WardenError as exc:
        print(f"warden images build: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


def _cmd_rootfs(args: argparse.Namespace) -> int:
    from warden.providers.docker import images

    count = images.write_rootfs(args.out)
    print(f"{args.out}: {count} files; import it with `docker import {args.out} <tag>`")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("images", help="warden's own Docker image (no registry needed)")
    sub = p.add_subparsers(dest="images_command", required=True)
    b = sub.add_parser("build", help="build it from this host's Python and `docker import` it")
    b.add_argument("--tag", default=None,
                   help="image tag (default warden/python:<python version>-<warden version>)")
    b.set_defaults(func=_cmd_build)
    r = sub.add_parser("rootfs", help="only write the root filesystem tarball")
    r.add_argument("out", help="tarball to write")
    r.set_defaults(func=_cmd_rootfs)
