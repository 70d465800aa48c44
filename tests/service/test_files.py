"""The file routes: streamed up and down, listed, removed; every way out of the workspace
(.., absolute paths, links made inside pointing out) refused; uploads bounded by the disk."""

from __future__ import annotations

import hashlib
import os

import pytest


@pytest.fixture(scope="module")
def box(service):
    with service.client("acme") as c:
        r = c.post("/v1/sandboxes", json={"limits": {"disk_mb": 8, "wall_time_s": 60}})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        yield sid
        c.delete(f"/v1/sandboxes/{sid}")


def _chunks(data: bytes, size: int = 100_000):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_put_get_list_delete_a_file(service, box):
    data = os.urandom(3 << 20)
    with service.client("acme") as c:
        r = c.put(f"/v1/sandboxes/{box}/files/dir/blob.bin", content=data)
        assert r.status_code == 201, r.text
        assert r.json() == {"path": "dir/blob.bin", "size": len(data)}
        got = c.get(f"/v1/sandboxes/{box}/files/dir/blob.bin")
        assert got.status_code == 200 and got.content == data
        # A body without a length (chunked) streams in too.
        r = c.put(f"/v1/sandboxes/{box}/files/dir/chunked.bin", content=_chunks(data))
        assert r.status_code == 201 and r.json()["size"] == len(data)
        with c.stream("GET", f"/v1/sandboxes/{box}/files/dir/chunked.bin") as s:
            digest = hashlib.sha256()
            for part in s.iter_bytes():
                digest.update(part)
        assert digest.digest() == hashlib.sha256(data).digest()
        # The sandbox sees what was written.
        r = c.post(f"/v1/sandboxes/{box}/exec", json={"argv": ["wc", "-c", "dir/blob.bin"]})
        assert r.json()["stdout"].split()[0] == str(len(data))

        listed = c.get(f"/v1/sandboxes/{box}/files", params={"path": "dir"}).json()
        assert sorted(e["path"] for e in listed["entries"]) == ["blob.bin", "chunked.bin"]
        deep = c.get(f"/v1/sandboxes/{box}/files", params={"recursive": "true"}).json()
        assert "dir/blob.bin" in {e["path"] for e in deep["entries"]}

        assert c.delete(f"/v1/sandboxes/{box}/files/dir/blob.bin").status_code == 204
        c.delete(f"/v1/sandboxes/{box}/files/dir/chunked.bin")
        r = c.get(f"/v1/sandboxes/{box}/files/dir/blob.bin")
        assert r.status_code == 404 and r.json()["error"]["type"] == "SandboxFileNotFound"
        assert r.json()["error"]["path"] == "dir/blob.bin"
        # Errors name the sandbox by the id the client knows, not the provider's.
        assert box in r.json()["error"]["message"] and "native-" not in r.text
        r = c.get(f"/v1/sandboxes/{box}/files/dir")
        assert r.status_code == 409 and r.json()["error"]["type"] == "SandboxIsADirectory"


@pytest.mark.parametrize("path", ["%2E%2E/%2E%2E/etc/passwd", "a/%2E%2E/%2E%2E/etc/passwd",
                                  "%2Fetc%2Fpasswd", "/etc/passwd"])
def test_traversal_through_the_path_is_refused(service, box, path):
    with service.client("acme") as c:
        for method in ("GET", "PUT", "DELETE"):
            r = c.request(method, f"/v1/sandboxes/{box}/files/{path}", content=b"x")
            assert r.status_code == 400, (method, r.status_code, r.text)
            assert r.json()["error"]["type"] == "PathEscapeError"
        r = c.get(f"/v1/sandboxes/{box}/files", params={"path": "../.."})
        assert r.status_code == 400 and r.json()["error"]["type"] == "PathEscapeError"
    assert os.path.exists("/etc/passwd")


def test_links_made_inside_pointing_out_are_not_followed(service, box, tmp_path):
    outside = tmp_path / "host-secret"
    outside.write_text("host secret\n")
    with service.client("acme") as c:
        r = c.post(f"/v1/sandboxes/{box}/exec", json={"argv": ["sh", "-c",
                   f"ln -s /etc/shadow leak && ln -s / root && ln -s {outside} mine"]})
        assert r.json()["exit_code"] == 0, r.text
        for path in ("leak", "root/etc/shadow", "root/etc/passwd", "mine"):
            r = c.get(f"/v1/sandboxes/{box}/files/{path}")
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["type"] == "PathEscapeError"
            assert b"root:" not in r.content
        r = c.put(f"/v1/sandboxes/{box}/files/mine", content=b"overwritten")
        assert r.status_code == 400 and r.json()["error"]["type"] == "PathEscapeError"
        r = c.put(f"/v1/sandboxes/{box}/files/root/tmp/planted", content=b"x")
        assert r.status_code == 400
    assert outside.read_text() == "host secret\n"
    assert not os.path.exists("/tmp/planted")


def test_uploads_are_bounded_by_the_sandbox_disk(service, box):
    with service.client("acme") as c:
        r = c.put(f"/v1/sandboxes/{box}/files/big", content=b"\0" * (9 << 20))
        assert r.status_code == 413 and r.json()["error"]["limit"] == 8 << 20
        # Without a length the body streams until the disk quota stops it.
        r = c.put(f"/v1/sandboxes/{box}/files/big",
                  content=_chunks(b"\0" * (12 << 20), 1 << 20))
        assert r.status_code == 413, r.text
        assert r.json()["error"]["type"] == "DiskQuotaExceeded"
        assert box in r.json()["error"]["message"] and "native-" not in r.text
        c.delete(f"/v1/sandboxes/{box}/files/big")


def test_a_stalled_upload_is_given_up(service, box, monkeypatch):
    import socket

    from warden.service import files

    monkeypatch.setattr(files, "IDLE_S", 1.0)
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"PUT /v1/sandboxes/{box}/files/stalled HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {service.keys['acme']}\r\n"
                  "Content-Length: 100000\r\n\r\n".encode() + b"y" * 10)
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 408"), head[:200]
    with service.client("acme") as c:
        c.delete(f"/v1/sandboxes/{box}/files/stalled")
        assert c.get(f"/v1/sandboxes/{box}").status_code == 200  # the sandbox serves on
