"""Errors as the API answers them: the status a client can act on, the warden error's type and
its own fields, and nothing of an unexpected exception."""

from __future__ import annotations

import errno

import pytest
from warden import errors as e
from warden.service.problems import NotFound, QuotaExceeded, describe


@pytest.mark.parametrize("exc, status, kind", [
    (e.InvalidArgument("argv", 3, "a list"), 400, "InvalidArgument"),
    (e.PathEscapeError("out", path="../x"), 400, "PathEscapeError"),
    (e.sandbox_file_error(errno.ENOENT, "a", op="read"), 404, "SandboxFileNotFound"),
    (e.sandbox_file_error(errno.EISDIR, "a", op="read"), 409, "SandboxIsADirectory"),
    (e.PayloadTooLarge(10, 5), 413, "PayloadTooLarge"),
    (e.DiskQuotaExceeded("full"), 413, "DiskQuotaExceeded"),
    (e.RateLimitExceeded("k", 1.5), 429, "RateLimitExceeded"),
    (e.ProviderUnavailable("kvm"), 503, "ProviderUnavailable"),
    (e.SandboxSetupError("clone", errno.EPERM), 503, "SandboxSetupError"),
    (e.HostResourceExhausted("RLIMIT_NOFILE", 10, "spawn", "raise it"), 503,
     "HostResourceExhausted"),
    (e.TimeoutExceeded("late"), 409, "TimeoutExceeded"),
    (QuotaExceeded("sandboxes", 1, 1, used=1), 429, "QuotaExceeded"),
    (NotFound(), 404, "SandboxNotFound"),
])
def test_status_and_type(exc, status, kind):
    got, body = describe(exc)
    assert (got, body["error"]["type"]) == (status, kind)
    assert body["error"]["message"]


def test_fields_travel_as_fields():
    _, body = describe(e.InvalidArgument("argv", 3, "a list"))
    assert body["error"]["argument"] == "argv" and body["error"]["allowed"] == "a list"
    _, body = describe(e.sandbox_file_error(errno.ENOENT, "a/b", op="read"))
    assert body["error"]["errno"] == errno.ENOENT and body["error"]["path"] == "a/b"
    _, body = describe(QuotaExceeded("requests_per_s", 2, 1, retry_after=0.25))
    assert body["error"]["quota"] == "requests_per_s" and body["error"]["retry_after"] == 0.25


def test_an_unexpected_error_says_nothing_of_itself():
    status, body = describe(RuntimeError("secret detail /etc/x"))
    assert status == 500 and "secret" not in str(body) and body["error"]["type"] == "InternalError"
