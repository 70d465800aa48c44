"""The transparent mode's readers of sandbox bytes: the DNS query codec and the name a
connection claims (TLS SNI, HTTP Host). Any bytes are an answer or a refusal, never an
exception."""

from __future__ import annotations

import ssl

from hypothesis import given
from hypothesis import strategies as st
from warden.host.net import dns, sniff


def _query(name: str, qtype: int = 1, flags: bytes = b"\x01\x00") -> bytes:
    q = b"\xab\xcd" + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00"
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return q + qtype.to_bytes(2, "big") + b"\x00\x01"


def test_a_query_is_read_and_answered():
    q = dns.parse_query(_query("API.Example.com"))
    assert q is not None and (q.id, q.name, q.qtype, q.rd) == (0xABCD, "api.example.com", 1, True)
    a = dns.reply(q, 0, ["203.0.113.7"])
    assert a[:2] == b"\xab\xcd" and a[3] & 0xF == 0 and a[6:8] == b"\x00\x01"
    assert a.endswith(bytes([203, 0, 113, 7]))
    nx = dns.reply(q, dns.NXDOMAIN)
    assert nx[3] & 0xF == 3 and nx[6:8] == b"\x00\x00"


def test_what_is_not_one_standard_query_is_dropped():
    assert dns.parse_query(_query("a.com", flags=b"\x81\x00")) is None      # a response
    assert dns.parse_query(_query("a.com", flags=b"\x09\x00")) is None      # opcode 1
    assert dns.parse_query(_query("a.com")[:-3]) is None                    # cut short
    pointer = _query("a.com")[:12] + b"\xc0\x0c\x00\x01\x00\x01"
    assert dns.parse_query(pointer) is None


@given(st.binary(max_size=600))
def test_any_datagram_is_a_query_or_nothing(data):
    q = dns.parse_query(data)
    if q is not None:
        dns.reply(q, dns.NXDOMAIN)


def _client_hello(name: str) -> bytes:
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_the_server_name_of_a_client_hello_and_the_host_of_a_request():
    hello = _client_hello("Web.Example.com")
    assert sniff.claimed_name(hello) == (True, "web.example.com")
    assert sniff.claimed_name(hello[:40]) == (False, None)
    req = b"GET / HTTP/1.1\r\nAccept: */*\r\nHost: web.example.com:8080\r\n\r\n"
    assert sniff.claimed_name(req) == (True, "web.example.com")
    assert sniff.claimed_name(req[:20]) == (False, None)
    assert sniff.claimed_name(b"GET / HTTP/1.1\r\nHost: 203.0.113.7\r\n\r\n") == (True, None)
    two = b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n"
    assert sniff.claimed_name(two) == (True, None)
    assert sniff.claimed_name(b"SSH-2.0-OpenSSH_9.6\r\n") == (True, None)


@given(st.binary(max_size=600))
def test_any_first_bytes_claim_a_name_or_none(data):
    done, name = sniff.claimed_name(data)
    assert name is None or done
    done, name = sniff.claimed_name(b"\x16\x03\x01" + data)
    assert name is None or done
