"""Quotas from the config file (429 naming the quota), JSON bodies bounded (413), and the
config file's own checks."""

from __future__ import annotations

import pytest
from warden.errors import InvalidArgument
from warden.service import config
from warden.service.problems import QuotaExceeded


def _quota(r):
    assert r.status_code == 429, r.text
    return r.json()["error"]["quota"]


def test_live_sandboxes_memory_and_largest_limits(service):
    with service.client("tight") as c:
        assert _quota(c.post("/v1/sandboxes", json={"limits": {"memory_mb": 512}})) \
            == "max_memory_mb"
        assert _quota(c.post("/v1/sandboxes", json={"limits": {"disk_mb": 4096}})) \
            == "max_disk_mb"
        assert _quota(c.post("/v1/sandboxes", json={"limits": {"wall_time_s": 7200}})) \
            == "max_wall_time_s"
        first = c.post("/v1/sandboxes", json={"limits": {"memory_mb": 200}})
        assert first.status_code == 201, first.text
        try:
            r = c.post("/v1/sandboxes", json={"limits": {"memory_mb": 64}})
            assert _quota(r) == "sandboxes"
            assert r.json()["error"]["used"] == 1 and r.json()["error"]["limit"] == 1
        finally:
            assert c.delete(f"/v1/sandboxes/{first.json()['id']}").status_code == 204
        # The slot is free again once the sandbox is gone.
        again = c.post("/v1/sandboxes", json={"limits": {"memory_mb": 64}})
        assert again.status_code == 201
        c.delete(f"/v1/sandboxes/{again.json()['id']}")
    with service.client("admin") as c:
        metrics = c.get("/metrics").text
    assert 'warden_quota_refusals_total{quota="sandboxes",tenant="tight"}' in metrics
    assert 'warden_sandboxes{state="running",tenant="tight"} 0.0' in metrics
    assert 'warden_sandbox_create_seconds_count{path="on_call"}' in metrics
    assert 'route="/v1/sandboxes/{id}"' in metrics


def test_total_memory_quota(tmp_path):
    # Two sandboxes' memory over the tenant's total, checked on the registry alone.
    from warden.service.registry import Registry
    from warden.spec.limits import Limits

    reg = Registry(config.Config(defaults=config.Quotas(sandboxes=5, memory_mb=300)))
    reg.reserve("t", Limits(memory_mb=200))
    with pytest.raises(QuotaExceeded) as got:
        reg.reserve("t", Limits(memory_mb=200))
    assert got.value.fields["quota"] == "memory_mb" and got.value.fields["used"] == 200
    reg.release("t", Limits(memory_mb=200))
    reg.reserve("t", Limits(memory_mb=200))


def test_requests_per_second(service):
    with service.client("slow") as c:
        codes = [c.get("/v1/sandboxes") for _ in range(5)]
    refused = [r for r in codes if r.status_code == 429]
    assert codes[0].status_code == 200 and refused
    assert refused[0].json()["error"]["quota"] == "requests_per_s"
    assert int(refused[0].headers["retry-after"]) >= 1


def test_json_bodies_over_the_cap_are_413(service):
    with service.client("acme") as c:
        r = c.post("/v1/sandboxes", content=b"{" + b" " * 70_000 + b"}")
        assert r.status_code == 413 and r.json()["error"]["limit"] == 65536
        r = c.post("/v1/sandboxes/sb_x/exec", json={"argv": ["cat"], "stdin": "x" * 70_000})
        assert r.status_code in (404, 413)  # the sandbox is looked up first
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        try:
            r = c.post(f"/v1/sandboxes/{sid}/exec", json={"argv": ["cat"], "stdin": "x" * 70_000})
            assert r.status_code == 413 and r.json()["error"]["type"] == "PayloadTooLarge"
            chunked = (b"x" * 10_000 for _ in range(10))
            r = c.post(f"/v1/sandboxes/{sid}/code", content=chunked)
            assert r.status_code == 413
        finally:
            c.delete(f"/v1/sandboxes/{sid}")


def test_config_files_yaml_and_toml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("defaults: {sandboxes: 3}\ntenants: {acme: {max_cpus: 0.5}}\n")
    got = config.load(y)
    assert got.quotas("acme").sandboxes == 3 and got.quotas("acme").max_cpus == 0.5
    assert got.quotas("else").max_cpus == config.Quotas().max_cpus
    t = tmp_path / "c.toml"
    t.write_text("[server]\nworkers = 4\n[tenants.acme]\nrequests_per_s = 2\n")
    got = config.load(t)
    assert got.workers == 4 and got.quotas("acme").requests_per_s == 2
    assert config.load(None) == config.Config()


@pytest.mark.parametrize("text", ["defaults: {sandbox: 3}\n", "tenants: {a: {sandboxes: 0}}\n",
                                  "tenants: {a: {sandboxes: 1.5}}\n", "server: {x: 1}\n",
                                  "other: 1\n", "a: &x [1]\nb: *x\n", "- 1\n"])
def test_a_wrong_config_is_refused_naming_it(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgument):
        config.load(path)
