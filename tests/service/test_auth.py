"""Keys, scopes and tenants: 401 for no, wrong, revoked or expired keys; 403 for a scope that
does not allow the route; another tenant's sandbox answers exactly as a missing one; keys
appear in neither the log nor the metrics."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def acme_box(service):
    with service.client("acme") as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        yield sid
        c.delete(f"/v1/sandboxes/{sid}")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer  x y", "Basic abc",
                                    "Bearer wdn_000000000000_" + "A" * 43, "Bearer nonsense"])
def test_no_or_malformed_or_unknown_key_is_401(service, acme_box, header):
    headers = {} if header is None else {"Authorization": header}
    with service.client(headers=headers) as c:
        for method, path in (("GET", "/v1/sandboxes"), ("POST", "/v1/sandboxes"),
                             ("GET", f"/v1/sandboxes/{acme_box}"),
                             ("POST", f"/v1/sandboxes/{acme_box}/exec"),
                             ("GET", f"/v1/sandboxes/{acme_box}/files/x"),
                             ("GET", "/metrics")):
            r = c.request(method, path, json={"argv": ["true"]})
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["type"] == "Unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_secret_of_a_real_key_id_is_401(service):
    real = service.keys["acme"]
    wrong = real[:-1] + ("A" if real[-1] != "A" else "B")
    with service.client(headers={"Authorization": f"Bearer {wrong}"}) as c:
        assert c.get("/v1/sandboxes").status_code == 401


@pytest.mark.parametrize("name", ["revoked", "expired"])
def test_revoked_and_expired_keys_are_401(service, name):
    with service.client(name) as c:
        r = c.get("/v1/sandboxes")
    assert r.status_code == 401


def test_a_key_revoked_while_the_server_runs_stops_at_once(service):
    from warden.service.keys import KeyStore

    store = KeyStore(service.state_dir)
    info, text = store.create("acme")
    with service.client(headers={"Authorization": f"Bearer {text}"}) as c:
        assert c.get("/v1/sandboxes").status_code == 200
        store.revoke(info.id)
        assert c.get("/v1/sandboxes").status_code == 401


def test_read_scope_may_only_get(service, acme_box):
    with service.client("read") as c:
        assert c.get("/v1/sandboxes").status_code == 200
        assert c.get(f"/v1/sandboxes/{acme_box}").status_code == 200
        for method, path in (("POST", "/v1/sandboxes"), ("DELETE", f"/v1/sandboxes/{acme_box}"),
                             ("POST", f"/v1/sandboxes/{acme_box}/exec"),
                             ("POST", f"/v1/sandboxes/{acme_box}/code"),
                             ("PUT", f"/v1/sandboxes/{acme_box}/files/x"),
                             ("DELETE", f"/v1/sandboxes/{acme_box}/files/x"),
                             ("GET", "/metrics")):
            r = c.request(method, path, json={"argv": ["true"]})
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["type"] == "Forbidden"
    with service.client("acme") as c:  # the sandbox is untouched
        assert c.get(f"/v1/sandboxes/{acme_box}").status_code == 200


def test_sandboxes_scope_is_refused_the_admin_routes(service):
    with service.client("acme") as c:
        assert c.get("/metrics").status_code == 403
    with service.client("admin") as c:
        r = c.get("/metrics")
        assert r.status_code == 200 and "warden_http_requests_total" in r.text


def test_another_tenants_sandbox_is_404_exactly_like_a_missing_one(service, acme_box):
    missing = "sb_" + "0" * 16
    with service.client("other") as c:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/exec"), ("POST", "/code"),
                               ("GET", "/files"), ("GET", "/files/x"), ("PUT", "/files/x"),
                               ("DELETE", "/files/x")):
            theirs = c.request(method, f"/v1/sandboxes/{acme_box}{suffix}",
                               json={"argv": ["true"], "code": "1"})
            absent = c.request(method, f"/v1/sandboxes/{missing}{suffix}",
                               json={"argv": ["true"], "code": "1"})
            assert theirs.status_code == absent.status_code == 404, (method, suffix)
            assert theirs.content == absent.content
            assert dict(theirs.headers) | {"date": ""} == dict(absent.headers) | {"date": ""}
        assert c.get("/v1/sandboxes").json() == {"sandboxes": []}
    with service.client("acme") as c:  # still there, still acme's
        r = c.post(f"/v1/sandboxes/{acme_box}/exec", json={"argv": ["true"]})
        assert r.status_code == 200


def test_keys_are_in_neither_the_log_nor_the_metrics(service, acme_box, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = service.keys["acme"][:-2] + "zz"
    with service.client("acme") as c:
        c.post(f"/v1/sandboxes/{acme_box}/exec", json={"argv": ["true"]})
        c.get("/v1/sandboxes/sb_nothere")
        c.post("/v1/sandboxes", json={"limits": {"memory_mb": 1}})
    with service.client(headers={"Authorization": f"Bearer {wrong}"}) as c:
        c.get("/v1/sandboxes")
    with service.client("admin") as c:
        metrics = c.get("/metrics").text
    assert caplog.records, "nothing was logged at all: the check would be empty"
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for text in [*service.keys.values(), wrong]:
        secret = text.split("_", 2)[2]
        assert secret not in logged and secret not in metrics
        assert text.split("_")[1] not in metrics  # not even the key id
    assert 'warden_auth_refusals_total{status="401"}' in metrics
