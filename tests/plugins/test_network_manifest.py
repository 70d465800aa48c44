"""plugin.yaml's network section: ``none`` or ``{allow: [...], deny: [...]}``, and a plugin
whose manifest allows a host goes out through its sandbox's proxy, under its policy."""

from __future__ import annotations

import socket
import threading

import pytest
import warden
from warden.errors import ManifestError
from warden.plugins.manifest import manifest_from_dict

from tests.plugins.test_plugins import make_plugin, native_ok


def test_a_network_section_is_a_policy():
    m = manifest_from_dict({"name": "p", "network": {"allow": ["api.example.com:443"],
                                                      "deny": ["*.evil.example"]}})
    assert m.network == warden.NetworkPolicy(allow=["api.example.com:443"],
                                             deny=["*.evil.example"])
    assert manifest_from_dict({"name": "p"}).network == "none"


@pytest.mark.parametrize(("network", "field"), [
    ({"allow": ["a.com:0"]}, "network.allow"),
    ({"deny": ["bad name"]}, "network.deny"),
    ({"allow": "a.com"}, "network.allow"),
    ({"allow": ["a.com"], "resolve": {"a.com": "127.0.0.1"}}, "network"),
    ({}, "network"),
    ("open", "network"),
])
def test_a_malformed_network_section_is_refused_by_field(network, field):
    with pytest.raises(ManifestError) as info:
        manifest_from_dict({"name": "p", "network": network})
    assert info.value.field == field


PROBE = """
    import os
    import socket

    def handle(action, payload):
        s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
        s.sendall(("CONNECT localhost:%d HTTP/1.1\\r\\n\\r\\n" % payload).encode())
        return [os.environ.get("HTTP_PROXY"), s.recv(100).decode().split("\\r\\n")[0]]
"""


def test_a_plugin_goes_out_through_its_proxy_under_its_policy(tmp_path):
    native_ok()
    # A server on the host's own loopback: the policy allows every name, and still the
    # plugin cannot reach it (always denied).
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    reached = []
    threading.Thread(target=lambda: reached.append(srv.accept()), daemon=True).start()
    d = make_plugin(tmp_path, "netp", PROBE, allowed_imports=["os", "socket"],
                    network={"allow": ["*"]})
    engine = warden.Engine()
    try:
        got = engine.load(d).call("probe", srv.getsockname()[1])
    finally:
        engine.close()
        srv.close()
    assert got == ["http://127.0.0.1:3128", "HTTP/1.1 403 Forbidden"]
    assert reached == []
