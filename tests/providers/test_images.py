"""warden's own image: the root filesystem holds a working Python and nothing of site-packages."""

from __future__ import annotations

import os
import sys
import tarfile

from warden.cli import build_parser
from warden.providers.docker import images


def test_rootfs_has_the_interpreter_its_libraries_and_an_unprivileged_user(tmp_path):
    out = tmp_path / "rootfs.tar"
    count = images.write_rootfs(out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        passwd = tar.extractfile("etc/passwd").read().decode()
        exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable)).lstrip("/")
        assert exe in names
        assert tar.getmember(exe).mode & 0o111
        assert tar.getmember("usr/local/bin/python3").linkname == "/" + exe
        assert tar.getmember("tmp").mode & 0o1777 == 0o1777
    assert count > 100
    assert any(n.endswith("/libc.so.6") for n in names)
    assert any("/encodings/" in n for n in names)
    assert not any("/site-packages/" in n for n in names)
    assert "warden:x:1000:1000:" in passwd


def test_default_tag_names_python_and_warden_versions():
    import warden

    v = sys.version_info
    assert images.default_image_tag() == (f"warden/python:{v.major}.{v.minor}.{v.micro}-"
                                          f"{warden.__version__}")


def test_cli_has_images_build():
    args = build_parser().parse_args(["images", "build", "--tag", "x/y:z"])
    assert args.tag == "x/y:z" and args.func.__name__ == "_cmd_build"


def test_rootfs_has_the_sandbox_s_mount_points(tmp_path):
    out = tmp_path / "rootfs.tar"
    images.write_rootfs(out)
    with tarfile.open(out) as tar:
        ws = tar.getmember("workspace")
        assert ws.isdir() and ws.uid == images.UID
        for d in ("opt/warden", "proc", "sys", "dev", "usr/local/bin", "home/warden"):
            assert tar.getmember(d).isdir()
