"""Every route of the API against a real server and real sandboxes."""

from __future__ import annotations

import base64


def test_healthz_needs_no_key(service):
    with service.client() as c:
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_openapi_names_every_route(service):
    with service.client("read") as c:
        doc = c.get("/v1/openapi.json").json()
    assert {"/v1/sandboxes", "/v1/sandboxes/{id}", "/v1/sandboxes/{id}/exec",
            "/v1/sandboxes/{id}/code", "/v1/sandboxes/{id}/files",
            "/v1/sandboxes/{id}/files/{path}", "/healthz", "/metrics"} <= set(doc["paths"])


def test_create_get_list_exec_code_delete(service):
    with service.client("acme") as c:
        r = c.post("/v1/sandboxes", json={"limits": {"memory_mb": 128, "wall_time_s": 60},
                                          "labels": {"project": "demo"},
                                          "env": {"GREETING": "hi"}})
        assert r.status_code == 201, r.text
        made = r.json()
        sid = made["id"]
        assert made["labels"] == {"project": "demo", "tenant": "acme"}
        assert made["limits"]["memory_mb"] == 128
        assert c.get(f"/v1/sandboxes/{sid}").json()["id"] == sid
        listed = c.get("/v1/sandboxes", params={"label": "project=demo"}).json()["sandboxes"]
        assert [s["id"] for s in listed] == [sid]
        assert c.get("/v1/sandboxes", params={"label": "project=else"}).json() == {
            "sandboxes": []}

        r = c.post(f"/v1/sandboxes/{sid}/exec",
                   json={"argv": ["sh", "-c", "echo $GREETING $EXTRA; cat; head -c 3 /dev/zero >&2"],
                         "stdin": "in\n", "env": {"EXTRA": "x"}})
        out = r.json()
        assert r.status_code == 200, r.text
        assert (out["exit_code"], out["reason"], out["ok"]) == (0, "exited", True)
        assert (out["stdout"], out["stdout_encoding"]) == ("hi x\nin\n", "utf-8")
        assert out["stderr_encoding"] == "base64" or out["stderr"] == "\0\0\0"
        assert out["stdout_truncated"] is False and "cpu_user_s" in out

        r = c.post(f"/v1/sandboxes/{sid}/exec",
                   json={"argv": ["sh", "-c", "printf '\\377\\376'; cat"],
                         "stdin_base64": base64.b64encode(b"\x00\xff").decode()})
        out = r.json()
        assert out["stdout_encoding"] == "base64"
        assert base64.b64decode(out["stdout"]) == b"\xff\xfe\x00\xff"

        r = c.post(f"/v1/sandboxes/{sid}/exec",
                   json={"argv": ["sh", "-c", "head -c 100000 /dev/zero"],
                         "max_output_bytes": 1000})
        out = r.json()
        assert out["stdout_truncated"] is True and out["stdout_dropped"] == 99000

        c.post(f"/v1/sandboxes/{sid}/code", json={"code": "x = 41"})
        r = c.post(f"/v1/sandboxes/{sid}/code", json={"code": "print('p'); x + 1"})
        assert r.status_code == 200 and r.json()["result"] == "42"
        assert r.json()["stdout"] == "p\n" and r.json()["error"] is None

        assert c.delete(f"/v1/sandboxes/{sid}").status_code == 204
        assert c.get(f"/v1/sandboxes/{sid}").status_code == 404
        assert c.delete(f"/v1/sandboxes/{sid}").status_code == 404


def test_bad_arguments_are_400_naming_the_field(service):
    with service.client("acme") as c:
        r = c.post("/v1/sandboxes", json={"limits": {"memory_mb": -1}})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "InvalidArgument"
        assert r.json()["error"]["argument"] == "memory_mb"
        r = c.post("/v1/sandboxes", json={"limits": {"bogus": 1}})
        assert r.status_code == 400 and r.json()["error"]["argument"] == "limits.bogus"
        r = c.post("/v1/sandboxes", json={"labels": {"tenant": "globex"}})
        assert r.status_code == 400 and r.json()["error"]["argument"] == "labels.tenant"
        r = c.post("/v1/sandboxes", content=b"{not json", headers={
            "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidJSON"
        r = c.post("/v1/sandboxes", json={"ttl_s": 5})
        assert r.status_code == 400 and r.json()["error"]["argument"] == "ttl_s"
        r = c.get("/v1/nothing")
        assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
