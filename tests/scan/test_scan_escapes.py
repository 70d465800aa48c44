"""Every payload of tests/data/jail_escapes.txt (one per line, a literal \\n marks a line break
inside a payload) is flagged by the default policy, by the C++ scanner and the reference alike,
and none of them is flagged only for being unparsable."""

from __future__ import annotations

import os

import pytest
import warden
from warden.scan.reference import reference_scan

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "jail_escapes.txt")


def payloads() -> list[str]:
    with open(DATA, encoding="utf-8") as fh:
        lines = [line for line in fh.read().split("\n") if line.strip()]
    return [line.replace("\\n", "\n") for line in lines]


def test_corpus_has_at_least_100_distinct_payloads():
    ps = payloads()
    assert len(ps) >= 100 and len(set(ps)) == len(ps)


@pytest.mark.parametrize("payload", payloads())
def test_payload_is_flagged(payload):
    got = {(f.rule, f.line, f.col) for f in warden.scan(payload)}
    assert got, f"not flagged: {payload!r}"
    assert all(r != "syntax-error" for r, _, _ in got), f"flagged only as unparsable: {payload!r}"
    assert got == {(f.rule, f.line, f.col) for f in reference_scan(payload)}
