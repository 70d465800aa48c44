"""The one path rule: lexical checks, and opens beneath a root that follow no symbolic link,
with openat2 and with the component walk used where openat2 is missing."""

from __future__ import annotations

import errno
import os
import threading

import pytest
from warden.errors import PathEscapeError
from warden.wire import paths
from warden.wire.paths import check_relative, open_beneath, open_dir_beneath


@pytest.mark.parametrize(("given", "normal"), [
    ("a", "a"), ("a/b", "a/b"), ("./a", "a"), ("a//b/", "a/b"), (".", "."), ("", "."),
])
def test_relative_paths_are_normalised(given, normal):
    assert check_relative(given) == normal


@pytest.mark.parametrize("bad", ["/etc/passwd", "..", "a/../../x", "a/..", "a\0b", None, 3,
                                 "x" * 5000])
def test_paths_with_a_way_out_are_refused(bad):
    with pytest.raises(PathEscapeError):
        check_relative(bad)


@pytest.mark.parametrize("bad", ["", ".", "./a", "a//b", "a/", "a/./b"])
def test_canonical_paths_have_no_empty_or_dot_component(bad):
    with pytest.raises(PathEscapeError):
        check_relative(bad, canonical=True)


@pytest.fixture(params=["openat2", "walk"])
def mode(request, monkeypatch):
    """Both ways of opening: openat2 (when this kernel has it) and the component walk."""
    if request.param == "walk":
        monkeypatch.setattr(paths, "_openat2_usable", False)
    else:
        monkeypatch.setattr(paths, "_openat2_usable", None)
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            if not paths._probe(fd):
                pytest.skip("openat2 is not available on this host")
        finally:
            os.close(fd)
    return request.param


@pytest.fixture
def tree(tmp_path):
    """root/ with a file, a directory, a link out at the leaf, a link out in the middle and a
    link that stays inside; outside/ beside it holds a secret."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("outside")
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "f").write_text("inside")
    (root / "leaf").symlink_to(outside / "secret")
    (root / "mid").symlink_to(outside)
    (root / "inner").symlink_to("dir")
    return root


def read(root, path: str) -> bytes:
    fd = open_beneath(root, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def test_a_file_beneath_the_root_opens(mode, tree):
    assert read(tree, "dir/f") == b"inside"
    assert read(tree, "./dir//f") == b"inside"
    fd = open_beneath(tree, "dir/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    assert (tree / "dir" / "new").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("path", "link"), [("leaf", "leaf"), ("mid/secret", "mid"),
                                            ("inner/f", "inner")])
def test_a_link_anywhere_on_the_path_is_refused_naming_the_path(mode, tree, path, link):
    with pytest.raises(PathEscapeError) as info:
        read(tree, path)
    assert info.value.path == path
    assert repr(path) in str(info.value) and repr(link) in str(info.value)
    with pytest.raises(PathEscapeError):
        open_beneath(tree, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert (tree.parent / "outside" / "secret").read_text() == "outside"


def test_other_failures_are_oserrors_naming_the_path_as_given(mode, tree):
    with pytest.raises(FileNotFoundError) as info:
        read(tree, "./dir/missing")
    assert (info.value.errno, info.value.filename) == (errno.ENOENT, "./dir/missing")
    with pytest.raises(NotADirectoryError) as info:
        read(tree, "dir/f/x")
    assert info.value.filename == "dir/f/x"


def test_a_descriptor_root_is_used_and_kept_open(mode, tree):
    rootfd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read(rootfd, "dir/f") == b"inside"
        os.fstat(rootfd)  # still open
    finally:
        os.close(rootfd)


def test_directories_are_made_beneath_the_root_and_never_through_a_link(mode, tree):
    fd = open_dir_beneath(tree, "new/deeper", create=True)
    os.close(fd)
    assert (tree / "new" / "deeper").is_dir()
    with pytest.raises(PathEscapeError) as info:
        open_dir_beneath(tree, "mid/made", create=True)
    assert info.value.path == "mid/made"
    assert not (tree.parent / "outside" / "made").exists()
    with pytest.raises(NotADirectoryError) as info:
        open_dir_beneath(tree, "dir/f/sub", create=True)
    assert info.value.filename == "dir/f/sub"


EXCHANGE_SOURCE = """
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2


def exchange(a, b):
    # renameat2(RENAME_EXCHANGE): both names exist at every instant, one the directory and
    # the other the link, so a reader meets one or the other, never neither.
    if _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
"""


def test_a_directory_swapped_for_a_link_during_reads_never_leads_out(mode, tmp_path):
    """A racer swaps root/d between a directory and a link to outside/ while reads of
    d/secret run: every read gets the inside file or is refused, never the outside one."""
    space: dict = {}
    exec(EXCHANGE_SOURCE, space)  # the same helper the sandbox test runs inside
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("OUTSIDE")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "secret").write_text("inside")
    (root / "other").symlink_to(outside)
    stop = threading.Event()
    swaps = [0]

    def racer():
        while not stop.is_set():
            space["exchange"](root / "d", root / "other")
            swaps[0] += 1

    t = threading.Thread(target=racer)
    t.start()
    seen = {"inside": 0, "refused": 0}
    try:
        for _ in range(3000):
            try:
                got = read(root, "d/secret")
            except PathEscapeError:
                seen["refused"] += 1
                continue
            assert got == b"inside", got
            seen["inside"] += 1
    finally:
        stop.set()
        t.join()
    assert swaps[0] > 0 and sum(seen.values()) == 3000
