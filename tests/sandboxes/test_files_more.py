"""Files.stat, mkdir, rename, entries, upload and download on a real sandbox."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc

import pytest
import warden
from warden import InvalidArgument, PathEscapeError, SandboxFileError

from tests.plugins.test_plugins import native_ok


@pytest.fixture
def sb():
    native_ok()
    with warden.Sandbox(limits=warden.Limits(wall_time_s=60, memory_mb=512, disk_mb=256)) as box:
        yield box


def test_stat_mkdir_rename_and_entries(sb):
    sb.files.mkdir("a/b/c")
    sb.files.write("a/b/c/x.txt", "hi")
    sb.exec(["sh", "-c", "chmod 600 a/b/c/x.txt; ln -s /etc a/link"])
    st = sb.files.stat("a/b/c/x.txt")
    assert (st.type, st.size, st.mode) == ("file", 2, 0o600) and st.mtime > 0
    assert sb.files.stat("a/link").type == "link"  # not followed
    assert [(e.path, e.type) for e in sb.files.entries("a", recursive=True)] == [
        ("b", "dir"), ("b/c", "dir"), ("b/c/x.txt", "file"), ("link", "link")]
    assert [e.path for e in sb.files.entries()] == ["a"]
    sb.files.rename("a/b/c/x.txt", "moved/y.txt")
    assert sb.files.read("moved/y.txt") == b"hi"
    with pytest.raises(FileNotFoundError):
        sb.files.stat("a/b/c/x.txt")
    with pytest.raises(FileExistsError):
        sb.files.mkdir("a", parents=False)
    with pytest.raises(PathEscapeError):
        sb.files.entries("a/link")
    with pytest.raises(PathEscapeError):
        sb.files.rename("moved/y.txt", "../y.txt")


def test_upload_and_download_of_a_file_larger_than_a_frame_with_flat_host_memory(sb, tmp_path):
    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for _ in range(64):
            f.write(block)
    tracemalloc.start()
    try:
        assert sb.files.upload(src, "big.bin") == 64 << 20
        dst = tmp_path / "back.bin"
        assert sb.files.download("big.bin", dst) == 64 << 20
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    assert sb.files.stat("big.bin").size == 64 << 20
    with open(src, "rb") as a, open(dst, "rb") as b:
        assert a.read() == b.read()
    r = sb.exec(["sh", "-c", "md5sum big.bin | cut -c1-32"])
    assert r.stdout.decode().strip() == hashlib.md5(src.read_bytes()).hexdigest()


def test_file_objects_and_empty_files(sb):
    assert sb.files.upload(io.BytesIO(b""), "empty") == 0
    assert sb.files.stat("empty").size == 0
    out = io.BytesIO()
    assert sb.files.download("empty", out) == 0 and out.getvalue() == b""
    with pytest.raises(InvalidArgument):
        sb.files.upload(io.StringIO("text"), "t")  # type: ignore[arg-type]
    with pytest.raises(SandboxFileError):
        sb.files.download("missing", io.BytesIO())
