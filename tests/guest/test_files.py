"""The workspace file operations on a plain directory: what they do, and the errors they
raise (SandboxFileError subclasses that are also the builtin OSError, naming the path as
given; PathEscapeError for a link anywhere on the path)."""

from __future__ import annotations

import errno

import pytest
from warden.errors import (
    PathEscapeError,
    SandboxFileError,
    SandboxFileExists,
    SandboxFileNotFound,
    SandboxIsADirectory,
    SandboxNotADirectory,
    WardenError,
)
from warden.guest import files


@pytest.fixture
def root(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "outside.txt").write_text("outside")
    return ws


def test_write_read_list_remove(root):
    files.write_file(str(root), "a/b/c.txt", b"hello")
    assert files.read_file(str(root), "./a/b/c.txt") == b"hello"
    assert [(e["name"], e["type"], e["size"]) for e in files.list_files(str(root), "a/b")] \
        == [("c.txt", "file", 5)]
    files.remove_file(str(root), "a")
    assert files.list_files(str(root)) == []


@pytest.mark.parametrize(("call", "path", "cls", "builtin", "code"), [
    (lambda r, p: files.read_file(r, p), "./missing.txt", SandboxFileNotFound,
     FileNotFoundError, errno.ENOENT),
    (lambda r, p: files.read_file(r, p), "d", SandboxIsADirectory, IsADirectoryError,
     errno.EISDIR),
    (lambda r, p: files.write_file(r, p, b"x"), "f/x", SandboxNotADirectory,
     NotADirectoryError, errno.ENOTDIR),
    (lambda r, p: files.write_file(r, p, b"x"), "d", SandboxIsADirectory, IsADirectoryError,
     errno.EISDIR),
    (lambda r, p: files.list_files(r, p), "nope", SandboxFileNotFound, FileNotFoundError,
     errno.ENOENT),
    (lambda r, p: files.list_files(r, p), "f", SandboxNotADirectory, NotADirectoryError,
     errno.ENOTDIR),
    (lambda r, p: files.remove_file(r, p), "nope", SandboxFileNotFound, FileNotFoundError,
     errno.ENOENT),
])
def test_failures_are_sandbox_file_errors_naming_the_path_as_given(root, call, path, cls,
                                                                   builtin, code):
    (root / "d").mkdir()
    (root / "f").write_bytes(b"file")
    with pytest.raises(builtin) as info:
        call(str(root), path)
    err = info.value
    assert type(err) is cls and isinstance(err, SandboxFileError)
    assert isinstance(err, WardenError)
    assert (err.errno, err.filename) == (code, path)
    assert str(root) not in str(err)  # the host's directory is never named


def test_file_exists_has_its_class():
    from warden.errors import sandbox_file_error

    assert type(sandbox_file_error(errno.EEXIST, "x")) is SandboxFileExists


@pytest.mark.parametrize("path", ["link", "mid/outside.txt", "inner/x"])
def test_links_are_refused_for_every_operation(root, path):
    (root / "link").symlink_to(root.parent / "outside.txt")
    (root / "mid").symlink_to(root.parent)
    (root / "d").mkdir()
    (root / "inner").symlink_to("d")  # even a link that stays inside
    with pytest.raises(PathEscapeError) as info:
        files.read_file(str(root), path)
    assert info.value.path == path
    with pytest.raises(PathEscapeError):
        files.write_file(str(root), path, b"overwritten")
    assert (root.parent / "outside.txt").read_text() == "outside"


def test_removing_a_link_removes_the_link_not_its_target(root):
    (root / "link").symlink_to(root.parent)
    files.remove_file(str(root), "link")
    assert not (root / "link").is_symlink()
    assert (root.parent / "outside.txt").read_text() == "outside"


def test_the_workspace_itself_is_not_a_file(root):
    with pytest.raises(PathEscapeError):
        files.remove_file(str(root), ".")
    with pytest.raises(PathEscapeError):
        files.write_file(str(root), "", b"x")
