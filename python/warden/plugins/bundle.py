"""A plugin's files as warden scanned them: what a plugin's workers run is that copy.

``take(root, area)`` reads the plugin directory once, without following links, into a snapshot
that warden owns and names it by the SHA-256 of what it read. ``area`` is a private directory
the engine's provider gives (``Provider.area_dir``: mode 0700, warden's user alone, never the
shared temporary directory); the provider makes the snapshot readable to its sandboxes by its
own means. The manifest is parsed from the snapshot, the scanner reads the
snapshot, and the snapshot is what is bound read-only at /plugin. So an edit of the plugin's
directory after the scan, before a worker starts or while one made ahead waits, never reaches
a worker; and an edited plugin is another snapshot, hence another sandbox spec, whose workers
are made from its own files only.

Left out of the copy: ``__pycache__`` (bytecode, which Python may run instead of the scanned
source) and the top-level ``data/`` (a tmpfs covers it in every worker). A link, or anything
else that is not a regular file or a directory, is not copied but refused at the scan, as
``warden scan`` refuses it (a ``file-unreadable`` finding); a plugin.yaml that is one fails
the load. The bundle is untrusted: only regular files are ever opened for reading (a FIFO or
a device never is, even one swapped in during the copy), plugin.yaml over its size cap is
refused by its size, unread, and the tree is bounded in files, entries, bytes and depth.

Snapshots are shared by the loads of equal contents and removed when the last is closed,
keeping the few most recent unused ones for a load of the same contents again (its spec is
then equal, so a worker made ahead for it can serve).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from typing import TYPE_CHECKING

from warden.errors import ManifestError, ProviderUnavailable, ScanRejected
from warden.plugins import files
from warden.plugins.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    parse_manifest,
    scan_policy,
)

if TYPE_CHECKING:
    from warden.scan import Policy

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_ENTRIES", "MAX_FILES", "Snapshot", "check_entry", "give_back", "manifest_of",
           "scan", "take"]

MAX_FILES = 10_000
MAX_ENTRIES = 20_000
MAX_DEPTH = 32
MAX_BYTES = 256 << 20
KEEP_UNUSED = 4
_SKIP_DIRS = frozenset({"__pycache__"})
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """``root``, the plugin directory as given; ``path``, warden's copy of it; ``digest``,
    the SHA-256 (hex) of every copied path, mode and byte; ``refused``, the paths (relative
    to ``root``) that were not copied because they are links or not regular files."""

    root: str
    path: str
    digest: str
    refused: tuple[str, ...] = ()


def _refuse(root: str, what: str, allowed: str) -> ManifestError:
    return ManifestError("(plugin files)", what, allowed, root)


class _Copier:
    """Copies a plugin tree into ``dest``, hashing what it writes; one use.

    Every step goes through a descriptor of the directory above it with O_NOFOLLOW, so a
    directory swapped for a link while the copy runs is refused, never followed out of the
    plugin (the copy is visible inside the sandbox). Entries are counted as they are listed
    and directories may nest only so deep: the tree's size bounds the work, not the other
    way round."""

    def __init__(self, root: str, dest: str) -> None:
        self.root = root
        self.dest = dest
        self.hash = hashlib.sha256()
        self.files = 0
        self.entries = 0
        self.bytes = 0
        self.refused: list[str] = []

    def tree(self, dir_fd: int, rel: str = "", depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise _refuse(self.root, f"{rel}: directories nested more than {MAX_DEPTH} deep",
                          f"at most {MAX_DEPTH} levels of directories")
        for name in self.names(dir_fd):
            sub = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                self.refuse(sub)
                continue
            if stat.S_ISDIR(st.st_mode):
                if name in _SKIP_DIRS or sub == "data":
                    continue
                os.mkdir(os.path.join(self.dest, sub))
                os.chmod(os.path.join(self.dest, sub), 0o755)  # whatever the umask
                self.hash.update(b"d\0" + os.fsencode(sub) + b"\0")
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=dir_fd)
                try:
                    self.tree(fd, sub, depth + 1)
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                self.file(dir_fd, name, sub)
            else:
                self.refuse(sub)

    def names(self, dir_fd: int) -> list[str]:
        names = []
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                self.entries += 1
                if self.entries > MAX_ENTRIES:
                    raise _refuse(self.root, f"more than {MAX_ENTRIES} entries",
                                  f"at most {MAX_ENTRIES} files, directories and other "
                                  "entries (keep virtual environments, checkouts and data out "
                                  "of the plugin directory)")
                names.append(entry.name)
        return sorted(names)

    def refuse(self, rel: str) -> None:
        # Never copied, never followed: the scan reports it (see scan()).
        self.refused.append(rel)
        self.hash.update(b"x\0" + os.fsencode(rel) + b"\0")

    def open(self, dir_fd: int, name: str, rel: str) -> int:
        """``name`` opened for reading, if it is still a regular file (else refused)."""
        try:
            # A file swapped for a FIFO or a device since the listing is never opened for I/O.
            fd, st = files.open_regular(name, dir_fd=dir_fd)
        except files.NotRegular:
            raise _refuse(self.root, f"{rel} changed while it was copied",
                          "a plugin directory that nobody edits during the load") from None
        if rel == MANIFEST_NAME and st.st_size > MAX_MANIFEST_BYTES:
            os.close(fd)
            # Refused by its size, unread: the manifest is parsed only below the cap.
            raise ManifestError("(document)", f"{st.st_size} bytes",
                                f"at most {MAX_MANIFEST_BYTES} bytes",
                                os.path.join(self.root, MANIFEST_NAME))
        return fd

    def file(self, dir_fd: int, name: str, rel: str) -> None:
        self.files += 1
        if self.files > MAX_FILES:
            raise _refuse(self.root, f"more than {MAX_FILES} files",
                          f"at most {MAX_FILES} files (keep virtual environments, checkouts "
                          "and data out of the plugin directory)")
        fd = self.open(dir_fd, name, rel)
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(fd)
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            self.hash.update(b"f\0" + os.fsencode(rel) + b"\0" + oct(mode).encode() + b"\0")
            out = os.open(os.path.join(self.dest, rel),
                          os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            os.fchmod(out, mode)  # whatever the umask: workers read it as "other"
            size = 0
            with os.fdopen(out, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    size += len(chunk)
                    self.bytes += len(chunk)
                    if self.bytes > MAX_BYTES:
                        raise _refuse(self.root, f"more than {MAX_BYTES >> 20} MiB",
                                      f"at most {MAX_BYTES >> 20} MiB of files besides data/")
                    self.hash.update(chunk)
                    dst.write(chunk)
            self.hash.update(b"\0" + str(size).encode() + b"\0")


class _Store:
    """The process's snapshots in one area: shared by digest, counted, removed when unused."""

    def __init__(self, area: str) -> None:
        self._area = area
        self._lock = threading.Lock()
        self._base: str | None = None
        self._pid = os.getpid()
        self._refs: dict[str, list] = {}  # digest -> [path, loads holding it]
        self._unused: collections.OrderedDict[str, str] = collections.OrderedDict()

    def base(self) -> str:
        with self._lock:
            if self._base is None:
                # Mode 0700 in a private area: the copies' own modes below (0755, 0644) are
                # for the sandboxes, which reach them through the provider, never by path.
                self._base = tempfile.mkdtemp(prefix="plugins-", dir=self._area)
                atexit.register(self.remove_all)
            return self._base

    def take(self, root: str) -> Snapshot:
        incoming = tempfile.mkdtemp(prefix=".incoming-", dir=self.base())
        copier = _Copier(root, incoming)
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                copier.tree(fd)
            finally:
                os.close(fd)
            os.mkdir(os.path.join(incoming, "data"))  # the data area's mount point
            os.chmod(os.path.join(incoming, "data"), 0o755)
            os.chmod(incoming, 0o755)
        except OSError as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            raise _refuse(root, f"{exc.filename or root}: {exc.strerror}",
                          "a readable plugin directory that nobody edits during the load") from exc
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        digest = copier.hash.hexdigest()
        with self._lock:
            held = self._refs.get(digest)
            if held is None:
                path = self._unused.pop(digest, None)
                if path is None:
                    suffix = os.path.basename(incoming).rpartition("-")[2]
                    path = os.path.join(os.path.dirname(incoming), f"{digest[:16]}-{suffix}")
                    os.rename(incoming, path)
                    incoming = ""
                held = self._refs[digest] = [path, 0]
            held[1] += 1
        if incoming:
            shutil.rmtree(incoming, ignore_errors=True)
        return Snapshot(root, held[0], digest, tuple(copier.refused))

    def owns(self, snap: Snapshot) -> bool:
        with self._lock:
            return self._base is not None and os.path.dirname(snap.path) == self._base

    def give_back(self, snap: Snapshot) -> None:
        doomed = []
        with self._lock:
            held = self._refs.get(snap.digest)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del self._refs[snap.digest]
            self._unused[snap.digest] = held[0]
            while len(self._unused) > KEEP_UNUSED:
                doomed.append(self._unused.popitem(last=False)[1])
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)

    def remove_all(self) -> None:
        # A forked child exiting must not remove its parent's snapshots.
        if os.getpid() == self._pid and self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def _store(area: str) -> _Store:
    with _stores_lock:
        got = _stores.get(area)
        if got is None:
            got = _stores[area] = _Store(area)
        return got


def take(root: str, area: str) -> Snapshot:
    """A snapshot of the plugin directory ``root`` (a real path) in the private directory
    ``area``; give it back when done."""
    if not os.path.isdir(root):
        raise ManifestError("(file)", root, "a plugin directory holding plugin.yaml", root)
    data = os.path.join(root, "data")
    if os.path.lexists(data) and (os.path.islink(data) or not os.path.isdir(data)):
        raise ManifestError("data/", data, "a plain directory (not a link or a file)", root)
    return _store(area).take(root)


def give_back(snap: Snapshot) -> None:
    """The load that took ``snap`` is closed; its copy goes when no load holds it."""
    with _stores_lock:
        stores = list(_stores.values())
    for store in stores:
        if store.owns(snap):
            store.give_back(snap)


def manifest_of(snap: Snapshot) -> Manifest:
    """The snapshot's plugin.yaml, validated; errors name the plugin's own file."""
    source = os.path.join(snap.root, MANIFEST_NAME)
    if MANIFEST_NAME in snap.refused:
        raise ManifestError("(file)", source, f"a regular {MANIFEST_NAME}, not a link, a FIFO or a "
                            "device: warden follows no links in plugin bundles and reads only "
                            "regular files", source)
    try:
        with open(os.path.join(snap.path, MANIFEST_NAME), "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError("(file)", source, f"a readable {MANIFEST_NAME} ({exc.strerror})",
                            source) from exc
    return parse_manifest(data, source=source)


def check_entry(snap: Snapshot, manifest: Manifest) -> None:
    """Refuse a manifest whose entry_point is not a file of the snapshot."""
    if not os.path.isfile(os.path.join(snap.path, manifest.entry_point)):
        raise ManifestError("entry_point", manifest.entry_point,
                            "an existing .py file inside the plugin directory",
                            os.path.join(snap.root, MANIFEST_NAME))


def scan(snap: Snapshot, manifest: Manifest, policy: Policy | None = None) -> None:
    """Refuse the plugin when the scanner finds anything in any .py file of the snapshot,
    under ``policy`` (default: the plugin's own, manifest.scan_policy); findings name the
    plugin's files."""
    try:
        from warden.scan import scan_paths
    except ImportError as exc:
        raise ProviderUnavailable(
            "the source scanner (warden.scan)",
            f"it failed to import ({exc}); rebuild warden's native core with scripts/dev-build "
            "or reinstall warden") from exc
    if policy is None:
        policy = scan_policy(manifest)
    found = scan_paths([snap.path], policy=policy)
    findings = [dataclasses.replace(f, filename=snap.root + f.filename[len(snap.path):])
                for per_file in found.values() for f in per_file]
    findings += _refusals(snap, policy, scan_paths)
    if findings:
        raise ScanRejected(findings, where=f"plugin {manifest.name!r} at {snap.root}")


def _refusals(snap: Snapshot, policy: object, scan_paths) -> list:
    """The findings for what the copy refused, in the scanner's words: a path given to
    scan_paths is never followed, so each refused entry comes back as file-unreadable."""
    from warden.scan import Finding

    out = []
    for rel in snap.refused:
        path = os.path.join(snap.root, rel)
        got = [f for f in scan_paths([path], policy=policy).get(path, ())
               if f.rule == "file-unreadable"]
        # Replaced by a plain file since the copy: still refused, it is not in the copy.
        out += got or [Finding("file-unreadable", 0, 0, f"cannot read {path}: it changed "
                               "while the plugin was loaded; load it again", "error", path)]
    return out
