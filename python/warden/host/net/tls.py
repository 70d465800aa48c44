"""TLS termination for credential injection: a certificate authority of one sandbox, the
certificates it issues for the hosts whose requests get headers, and TLS over a stream that
the proxy already holds (MemoryBIO, so that bytes the proxy has read are not lost).

What it means for the sandbox: for a host named in ``NetworkPolicy.inject``, the HTTPS
connection the sandbox makes ends at warden's proxy, which shows a certificate issued by the
sandbox's own CA (made here when the sandbox is made; its key never leaves warden's process).
The sandbox trusts that CA through the bundle warden binds read-only into it. The proxy then
opens its own TLS connection to the real host and verifies the host's certificate against the
host's trust store (or ``NetworkPolicy.upstream_ca``). The sandbox never sees the real
host's certificate. Every other host's CONNECT tunnel is relayed byte for byte, unread.

``cryptography`` is imported here alone, lazily, with an install hint.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from warden.errors import ProviderUnavailable

__all__ = ["BUNDLE_PATH", "CertAuthority", "TlsConn", "ca_env", "system_bundle",
           "upstream_context"]

# Where the sandbox finds its trust store (the host's CAs and the sandbox's own).
BUNDLE_PATH = "/etc/warden/ca-bundle.pem"
_VALID = datetime.timedelta(days=30)
_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                   "/etc/ssl/cert.pem")


def ca_env() -> dict[str, str]:
    """The variables that point TLS clients at the sandbox's bundle."""
    return {"SSL_CERT_FILE": BUNDLE_PATH, "REQUESTS_CA_BUNDLE": BUNDLE_PATH,
            "CURL_CA_BUNDLE": BUNDLE_PATH, "NODE_EXTRA_CA_CERTS": BUNDLE_PATH,
            "GIT_SSL_CAINFO": BUNDLE_PATH}


def system_bundle() -> bytes:
    """The host's own CA certificates (PEM), for the sandbox's bundle; b"" if none is found."""
    paths = [ssl.get_default_verify_paths().cafile, *_SYSTEM_BUNDLES]
    for path in paths:
        if path and os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    return b""


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:
        raise ProviderUnavailable(
            "credential injection (NetworkPolicy.inject)",
            "TLS termination needs the cryptography package: pip install 'warden[inject]'",
        ) from exc
    return x509, hashes, serialization, ec, NameOID


class CertAuthority:
    """One sandbox's CA. Its key stays in this process; leaf certificates are issued per host
    on first use and kept (as server contexts) for the CA's life."""

    def __init__(self) -> None:
        x509, hashes, serialization, ec, oid = _crypto()
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(oid.COMMON_NAME, "warden sandbox CA"),
                          x509.NameAttribute(oid.ORGANIZATION_NAME, "warden")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self._key, hashes.SHA256()))
        self.pem: bytes = self._cert.public_bytes(serialization.Encoding.PEM)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server context showing a certificate for ``host``; a client that names another
        host (SNI) is refused in the handshake."""
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                ctx = self._contexts[host] = self._make_context(host)
            return ctx

    def _make_context(self, host: str) -> ssl.SSLContext:
        x509, hashes, serialization, ec, oid = _crypto()
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid.COMMON_NAME, host)]))
            .issuer_name(self._cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(self._cert.not_valid_after_utc)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski.value), critical=False)
            .sign(self._key, hashes.SHA256()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        # load_cert_chain reads files only: the leaf's key is handed over in a memfd, read
        # through /proc/self/fd, so it never lies on a file system.
        fd = os.memfd_create("warden-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

        def sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
            if name is not None and name.lower().rstrip(".") != host:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            return None

        ctx.sni_callback = sni
        return ctx


def upstream_context(cafile: str | None) -> ssl.SSLContext:
    """How the proxy verifies the real host: the host's trust store, or ``cafile``."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TlsConn:
    """TLS over a connection the proxy already reads and writes (``read``/``write``
    coroutines), through memory BIOs; ``pending`` is what was read of it before."""

    def __init__(self, read: Callable[[int], Awaitable[bytes]],
                 write: Callable[[bytes], Awaitable[None]], ctx: ssl.SSLContext, *,
                 server_hostname: str | None = None, pending: bytes = b"") -> None:
        self._read, self._write = read, write
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._in.write(pending)
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=server_hostname is None,
                                 server_hostname=server_hostname)

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self._write(data)

    async def _step(self, fn: Callable[[], Any]) -> Any:
        while True:
            try:
                out = fn()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._read(65536)
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
                continue
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    await self._flush()  # the alert that says why, if there is one
                raise
            await self._flush()
            return out

    async def handshake(self) -> None:
        await self._step(self._obj.do_handshake)

    async def read(self, n: int) -> bytes:
        try:
            return bytes(await self._step(lambda: self._obj.read(n)))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    async def write(self, data: bytes) -> None:
        done = 0
        while done < len(data):
            chunk = memoryview(data)[done:]
            done += await self._step(partial(self._obj.write, chunk))

    async def close_notify(self) -> None:
        """End TLS cleanly (clients that read to the end expect the alert)."""
        with contextlib.suppress(ssl.SSLError, OSError):
            self._obj.unwrap()
        with contextlib.suppress(OSError):
            await self._flush()
