"""warden's own container image, made from this host's Python installation, with no registry.

Air-gapped hosts (and CI, where no registry is reachable) cannot pull a Python image, so warden
builds one: a root filesystem tarball holding the interpreter, its standard library (without
site-packages, tests and GUI modules), the shared libraries the interpreter and its extension
modules link against (from ``ldd``), the dynamic loader, a static busybox when the host has one
(a shell and core utilities for ``exec``), and minimal /etc files with an unprivileged user
``warden`` (uid 1000). ``docker import`` turns the tarball into an image tagged
``warden/python:<python version>-<warden version>``.

warden's own package and msgpack are not in the image: the Docker provider mounts the installed
ones read-only at start, so the image does not go stale when warden is upgraded.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess  # nosec B404
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from warden.errors import ProviderUnavailable

__all__ = [
    "BUILD_EXCLUDES",
    "IMAGE_REPOSITORY",
    "build_image",
    "default_image_tag",
    "ensure_image",
    "rootfs_members",
    "write_rootfs",
]

log = logging.getLogger(__name__)

IMAGE_REPOSITORY = "warden/python"
# Directory names left out of the standard library: large, and never needed by a worker.
BUILD_EXCLUDES = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib",
                            "tkinter", "turtledemo", "ensurepip", "lib2to3", "__phello__"})
UID = 1000
GID = 1000
# Where a shell and the usual commands come from when the host has a static busybox.
_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_BUSYBOX_APPLETS = ("sh", "cat", "ls", "echo", "sleep", "true", "false", "dd", "head", "id",
                    "env", "rm", "mkdir", "touch", "wc", "yes", "printf", "test", "kill")
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def default_image_tag() -> str:
    from warden._version import version

    return (f"{IMAGE_REPOSITORY}:{sys.version_info.major}.{sys.version_info.minor}."
            f"{sys.version_info.micro}-{version()}")


def _interpreter() -> Path:
    """The real interpreter binary, not a venv's symlink to it."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return Path(os.path.realpath(exe))


def _stdlib_dirs() -> list[Path]:
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    dirs = {Path(paths["stdlib"]), Path(paths["platstdlib"])}
    dynload = sysconfig.get_config_var("DESTSHARED")
    if dynload and os.path.isdir(dynload):
        dirs.add(Path(dynload))
    return sorted(dirs)


def _ldd(paths: list[Path]) -> set[Path]:
    """Every shared library (and the loader) that ``paths`` load, by ldd's own resolution."""
    found: set[Path] = set()
    ldd = shutil.which("ldd")
    if ldd is None:
        raise ProviderUnavailable("ldd (to find the interpreter's shared libraries)",
                                  "install libc-bin (Debian) or glibc's ldd")
    # ldd takes many files at once; a batch keeps this to a few processes.
    for start in range(0, len(paths), 200):
        batch = [str(p) for p in paths[start:start + 200]]
        # A fixed program; the arguments are files of the local Python installation.
        proc = subprocess.run([ldd, *batch], capture_output=True, text=True,  # nosec B603
                              check=False)
        for line in proc.stdout.splitlines():
            m = _LDD_LINE.match(line)
            if m:
                found.add(Path(m.group(1)))
    return found


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in BUILD_EXCLUDES]
        for name in filenames:
            yield Path(dirpath) / name


def rootfs_members() -> dict[str, Path]:
    """Path inside the image -> host file to copy there (dereferenced)."""
    members: dict[str, Path] = {}
    exe = _interpreter()
    members[str(exe)] = exe
    shared: list[Path] = [exe]
    for d in _stdlib_dirs():
        for f in _walk_files(d):
            if f.is_file():
                members[str(f)] = f
                if f.suffix == ".so" or ".so." in f.name:
                    shared.append(f)
    for lib in _ldd(shared):
        members[str(lib)] = Path(os.path.realpath(lib))
    # glibc loads libgcc_s at run time to unwind threads (pthread_cancel, thread exit).
    for lib in _ldd([Path("/bin/true")]) or ():
        libdir = lib.parent
        for extra in ("libgcc_s.so.1",):
            cand = libdir / extra
            if cand.exists():
                members[str(cand)] = Path(os.path.realpath(cand))
    for bb in _BUSYBOX_CANDIDATES:
        if os.path.isfile(bb) and not _ldd([Path(bb)]):
            members["/bin/busybox"] = Path(bb)
            break
    return members


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, uid: int = 0) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = uid
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mtime = int(time.time())
    tar.addfile(info)


def write_rootfs(out: str | os.PathLike[str]) -> int:
    """Write the root filesystem tarball to ``out``; return the number of files in it."""
    members = rootfs_members()
    exe = _interpreter()
    dirs: set[str] = set()
    for name in members:
        parent = os.path.dirname(name)
        while parent not in ("/", ""):
            dirs.add(parent)
            parent = os.path.dirname(parent)
    with tarfile.open(out, "w") as tar:
        # Every directory world-traversable: the interpreter may live under /root (pyenv), and
        # the container runs as uid 1000.
        # (/tmp here and below is the image's, not this host's: bandit B108 does not apply.)
        image_dirs = {"/bin", "/etc", "/tmp", "/workspace", "/usr", "/usr/local",  # nosec B108
                      "/usr/local/bin", "/proc", "/sys", "/dev", "/opt", "/opt/warden", "/home",
                      "/home/warden"}
        for d in sorted(dirs | image_dirs):
            if d == "/tmp":  # nosec B108
                _add_dir(tar, d, 0o1777)
            elif d in ("/workspace", "/home/warden"):
                _add_dir(tar, d, 0o755, uid=UID)
            else:
                _add_dir(tar, d)
        for name, src in sorted(members.items()):
            info = tar.gettarinfo(str(src), arcname=name.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = (info.mode | 0o444 | (0o111 if info.mode & 0o100 else 0)) & 0o755
            with open(src, "rb") as fh:
                tar.addfile(info, fh)
        _add_bytes(tar, "/etc/passwd", (f"root:x:0:0:root:/root:/bin/sh\n"
                                        f"warden:x:{UID}:{GID}:warden:/home/warden:/bin/sh\n"
                                        "nobody:x:65534:65534:nobody:/:/bin/false\n").encode())
        _add_bytes(tar, "/etc/group", f"root:x:0:\nwarden:x:{GID}:\nnogroup:x:65534:\n".encode())
        for link in ("python3", "python"):
            _add_symlink(tar, f"/usr/local/bin/{link}", str(exe))
        if "/bin/busybox" in members:
            for applet in _BUSYBOX_APPLETS:
                _add_symlink(tar, f"/bin/{applet}", "busybox")
    return len(members)


def _client():
    try:
        import docker
    except ImportError as exc:
        raise ProviderUnavailable("the Docker SDK for Python (module 'docker')",
                                  "pip install 'warden[docker]'") from exc
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ProviderUnavailable(
            f"a Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST', '(default socket)')}",
            f"{exc}; start one (scripts/dockerd-start prints the DOCKER_HOST to export)") from exc
    return client


def build_image(tag: str | None = None, *, client=None) -> str:
    """Build warden's image from this host's Python and ``docker import`` it; return its tag."""
    import docker

    tag = tag or default_image_tag()
    client = client or _client()
    repository, _, version = tag.rpartition(":")
    if not repository:
        repository, version = tag, "latest"
    with tempfile.TemporaryDirectory(prefix="warden-image-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        count = write_rootfs(tarball)
        log.info("rootfs of %d files, %.1f MB; importing it as %s", count,
                 tarball.stat().st_size / 1e6, tag)
        exe = _interpreter()
        changes = [
            "ENV PATH=/usr/local/bin:/bin:" + str(exe.parent),
            "ENV PYTHONDONTWRITEBYTECODE=1",
            f"USER {UID}:{GID}",
            "WORKDIR /workspace",
            f"LABEL warden.image=1 warden.python={exe}",
        ]
        try:
            client.api.import_image_from_file(str(tarball), repository=repository, tag=version,
                                              changes=changes)
        except docker.errors.DockerException as exc:
            raise ProviderUnavailable(f"image {tag} (docker import failed)", str(exc)) from exc
    return tag


def ensure_image(tag: str | None = None, *, client=None) -> str:
    """The tag of warden's image, built first when the engine does not have it."""
    import docker

    tag = tag or default_image_tag()
    client = client or _client()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        # Said at warning level: the build takes a while, and the caller did not ask for it.
        log.warning("image %s not found; building it from this host's Python (%s) as "
                    "`warden images build` does (no registry needed)", tag, _interpreter())
    return build_image(tag, client=client)
