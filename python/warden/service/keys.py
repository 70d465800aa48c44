"""API keys of warden serve: made once, shown once, kept only as salted scrypt hashes.

A key reads ``wdn_<id>_<secret>``: ``id`` (12 hex digits) finds its one row, so checking a key
costs one scrypt, never a scan of every hash; ``secret`` (256 bits) is what the hash is of.
The rows live in ``keys.db`` (SQLite) in the service's state directory. The text of a key is
never stored, logged or kept in memory past the check but as an HMAC under a secret of this
process (so that a key checked once is not hashed again on every request; revocation and
expiry are read from the database on every request all the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from warden.errors import InvalidArgument

__all__ = ["DEFAULT_STATE_DIR", "SCOPES", "STATE_ENV", "KeyInfo", "KeyStore", "state_dir"]

DEFAULT_STATE_DIR = "/var/lib/warden"
STATE_ENV = "WARDEN_SERVICE_DIR"
SCOPES = ("admin", "sandboxes", "read")
_TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
_KEY_RE = re.compile(r"wdn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})\Z")
# scrypt at N=2**14, r=8: 16 MiB and tens of milliseconds a check, once per key and process.
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 << 20}
_MAX_DAYS = 3650

_SCHEMA = """CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, scope TEXT NOT NULL,
    salt BLOB NOT NULL, hash BLOB NOT NULL,
    created REAL NOT NULL, expires REAL, revoked REAL)"""


def state_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The service's state directory: ``given``, else $WARDEN_SERVICE_DIR, else
    /var/lib/warden."""
    return Path(given or os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class KeyInfo:
    """What is known of a key but its text: id, tenant, scope, and created, expires and
    revoked as time.time() values (None: never expires, not revoked)."""

    id: str
    tenant: str
    scope: str
    created: float
    expires: float | None
    revoked: float | None

    def live(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def check_tenant(tenant: object) -> str:
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
        raise InvalidArgument("tenant", tenant, "1 to 63 of a-z 0-9 _ . -, starting with a "
                              "letter or digit")
    return tenant


class KeyStore:
    """The keys in ``<directory>/keys.db``; every method opens its own connection, so any
    thread may call any method."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "keys.db"
        self._pepper = secrets.token_bytes(32)
        self._checked: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = not self.path.exists()
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            if fresh:
                os.chmod(self.path, 0o600)
            conn.execute(_SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    def create(self, tenant: str, scope: str = "sandboxes",
               expires_days: float | None = None) -> tuple[KeyInfo, str]:
        """A new key: its info and its text, which exists nowhere else from now on."""
        check_tenant(tenant)
        if scope not in SCOPES:
            raise InvalidArgument("scope", scope, " or ".join(SCOPES))
        if expires_days is not None and (isinstance(expires_days, bool) or not isinstance(
                expires_days, (int, float)) or not 0 < expires_days <= _MAX_DAYS):
            raise InvalidArgument("expires", expires_days, f"days above 0 up to {_MAX_DAYS}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        now = time.time()
        info = KeyInfo(key_id, tenant, scope, now,
                       None if expires_days is None else now + expires_days * 86400, None)
        with self._db() as db:
            db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                       (key_id, tenant, scope, salt, _hash(secret, salt), now, info.expires))
        return info, f"wdn_{key_id}_{secret}"

    def list(self) -> list[KeyInfo]:
        with self._db() as db:
            rows = db.execute("SELECT id, tenant, scope, created, expires, revoked FROM keys "
                              "ORDER BY created").fetchall()
        return [KeyInfo(*row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke key ``key_id`` (its id, or the whole key); False when there is no such
        live key."""
        found = _KEY_RE.match(key_id)
        key_id = found.group(1) if found else key_id
        with self._db() as db:
            cur = db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                             (time.time(), key_id))
            return cur.rowcount == 1

    def verify(self, text: str) -> KeyInfo | None:
        """The info of the live key ``text``, else None (malformed, unknown, wrong secret,
        revoked or expired alike)."""
        found = _KEY_RE.match(text) if isinstance(text, str) else None
        if not found:
            return None
        key_id, secret = found.groups()
        with self._db() as db:
            row = db.execute("SELECT id, tenant, scope, created, expires, revoked, salt, hash "
                             "FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        info = KeyInfo(*row[:6])
        if not info.live(time.time()):
            return None
        mark = hmac.new(self._pepper, text.encode(), hashlib.sha256).digest()
        with self._lock:
            seen = self._checked.get(key_id)
        if seen is not None and hmac.compare_digest(seen, mark):
            return info
        if not hmac.compare_digest(_hash(secret, row[6]), row[7]):
            return None
        with self._lock:
            self._checked[key_id] = mark
        return info
