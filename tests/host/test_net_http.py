"""The proxy's request reader: smuggling refused, and any bytes at all are a Head or a
BadRequest, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from warden.host.net.http import (
    MAX_HEAD,
    BadRequest,
    Target,
    forward_head,
    parse_head,
    parse_origin,
    socks_request,
)


def head(text: str):
    return parse_head(text.replace("\n", "\r\n").encode())


def test_an_absolute_request_is_forwarded_in_origin_form_without_proxy_headers():
    h = head("GET http://API.example.com/a?b=1 HTTP/1.1\nHost: api.example.com\n"
             "Proxy-Authorization: x\nConnection: keep-alive, X-Drop\nX-Drop: 1\nAccept: */*")
    assert h.target == Target("api.example.com", 80)
    out = forward_head(h).decode()
    assert out.startswith("GET /a?b=1 HTTP/1.1\r\nHost: api.example.com\r\n")
    assert "Proxy-" not in out and "x-drop" not in out.lower().replace("connection", "")
    assert out.endswith("accept: */*\r\nConnection: close\r\n\r\n")


def test_connect_names_host_and_port():
    assert head("CONNECT [2001:db8::1]:443 HTTP/1.1").target == Target("2001:db8::1", 443)
    with pytest.raises(BadRequest):
        head("CONNECT api.example.com HTTP/1.1")


@pytest.mark.parametrize("text", [
    "GET /x HTTP/1.1\nHost: a.com",
    "GET https://a.com/ HTTP/1.1",
    "GET http://a.com@b.com/ HTTP/1.1",
    "GET http://a.com/ HTTP/1.1\nHost: b.com",
    "GET http://a.com/ HTTP/1.1\nHost: a.com\nHost: a.com",
    "GET http://a.com:8080/ HTTP/1.1\nHost: a.com",
    "CONNECT a.com:443 HTTP/1.1\nHost: a.com:444",
    "POST http://a.com/ HTTP/1.1\nContent-Length: 3\nTransfer-Encoding: chunked",
    "POST http://a.com/ HTTP/1.1\nContent-Length: 3\nContent-Length: 4",
    "POST http://a.com/ HTTP/1.1\nTransfer-Encoding: gzip, chunked",
    "GET http://a.com/ HTTP/1.1\n folded: header",
    "GET http://a.com/ HTTP/2.0",
    "GET http://a.com/ HTTP/1.1\nX: a\x00b",
    "GET  http://a.com/ HTTP/1.1",
])
def test_ambiguous_or_smuggling_requests_are_refused(text):
    with pytest.raises(BadRequest):
        head(text)


def test_a_head_over_the_cap_is_refused():
    with pytest.raises(BadRequest) as info:
        parse_head(b"GET http://a.com/ HTTP/1.1\r\nX: " + b"a" * MAX_HEAD)
    assert info.value.status == 431


@given(st.binary(max_size=300))
def test_any_bytes_are_a_head_or_a_bad_request(data):
    try:
        parse_head(data)
    except BadRequest:
        pass


@given(st.binary(max_size=300))
def test_any_socks_request_is_a_target_or_a_reply_code(data):
    target, code = socks_request(data)
    assert (target is None) == (code != 0)
    assert code in (0, 1, 2, 7, 8)


def test_socks_connect_to_a_name():
    target, code = socks_request(b"\x01\x00\x03\x08a.test.x\x01\xbb")
    assert (target, code) == (Target("a.test.x", 443), 0)
    assert socks_request(b"\x02\x00\x01\x01\x02\x03\x04\x00\x50") == (None, 7)


API = Target("api.example.com", 443)


def origin(text: str):
    return parse_origin(text.replace("\n", "\r\n").encode(), API)


def test_a_request_in_a_tunnel_gets_the_injected_headers_in_place_of_its_own():
    h = origin("POST /v1 HTTP/1.1\nHost: api.example.com\nauthorization: Bearer mine\n"
               "Content-Length: 3")
    assert (h.target, h.body, h.length) == (API, "length", 3)
    out = forward_head(h, {"Authorization": "Bearer real"}, default_port=443).decode()
    assert out.startswith("POST /v1 HTTP/1.1\r\nHost: api.example.com\r\n")
    assert "mine" not in out and out.count("uthorization") == 1
    assert out.endswith("Authorization: Bearer real\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("text", [
    "GET /x HTTP/1.1\nHost: other.example.com",
    "GET /x HTTP/1.1\nHost: api.example.com:444",
    "GET /x HTTP/1.1\nHost: api.example.com\nHost: api.example.com",
    "GET http://api.example.com/x HTTP/1.1",
    "CONNECT api.example.com:443 HTTP/1.1",
    "GET /x HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked",
])
def test_a_request_in_a_tunnel_that_is_not_for_its_target_is_refused(text):
    with pytest.raises(BadRequest):
        origin(text)


@given(st.binary(max_size=300))
def test_any_bytes_in_a_tunnel_are_a_head_or_a_bad_request(data):
    try:
        parse_origin(data, API)
    except BadRequest:
        pass
