"""API keys: made once, kept only as salted scrypt hashes, checked by id then hash; revoked,
expired, wrong and malformed keys are refused alike; the database holds no key text."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest
import warden
from warden.errors import InvalidArgument
from warden.service import keys as keys_mod
from warden.service.keys import KeyStore, state_dir

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(warden.__file__)))


def test_a_new_key_verifies_as_its_tenant_and_scope(tmp_path):
    store = KeyStore(tmp_path)
    info, text = store.create("acme", "read")
    got = store.verify(text)
    assert got is not None and (got.id, got.tenant, got.scope) == (info.id, "acme", "read")
    assert store.verify(text) == got  # the second check takes the remembered path
    assert [k.id for k in store.list()] == [info.id]


def test_wrong_malformed_and_foreign_keys_are_refused(tmp_path):
    store = KeyStore(tmp_path)
    _, text = store.create("acme")
    other = KeyStore(tmp_path / "other")
    _, foreign = other.create("acme")
    wrong_secret = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    for bad in (wrong_secret, foreign, "", "wdn_", text + "x", "Bearer " + text, text.upper()):
        assert store.verify(bad) is None, bad


def test_revoked_key_is_refused_at_once_even_after_it_was_checked(tmp_path):
    store = KeyStore(tmp_path)
    info, text = store.create("acme")
    assert store.verify(text) is not None
    assert store.revoke(info.id) is True
    assert store.verify(text) is None
    assert store.revoke(info.id) is False
    assert store.list()[0].revoked is not None


def test_expired_key_is_refused(tmp_path, monkeypatch):
    store = KeyStore(tmp_path)
    _, text = store.create("acme", expires_days=1)
    assert store.verify(text) is not None
    later = time.time() + 2 * 86400
    monkeypatch.setattr(keys_mod.time, "time", lambda: later)
    assert store.verify(text) is None


def test_the_database_holds_no_key_text_and_is_private(tmp_path):
    store = KeyStore(tmp_path / "state")
    _, text = store.create("acme", "admin")
    secret = text.split("_", 2)[2]
    db_path = tmp_path / "state" / "keys.db"
    raw = db_path.read_bytes()
    assert text.encode() not in raw and secret.encode() not in raw
    with sqlite3.connect(db_path) as db:
        for row in db.execute("SELECT * FROM keys"):
            assert all(secret not in str(v) for v in row)
    assert db_path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("tenant", ["", "A", "../x", "a b", "x" * 64, 3])
def test_a_bad_tenant_name_is_refused(tmp_path, tenant):
    with pytest.raises(InvalidArgument):
        KeyStore(tmp_path).create(tenant)


def test_bad_scope_and_expiry_are_refused(tmp_path):
    with pytest.raises(InvalidArgument):
        KeyStore(tmp_path).create("acme", "root")
    with pytest.raises(InvalidArgument):
        KeyStore(tmp_path).create("acme", expires_days=0)


def test_state_dir_given_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(keys_mod.STATE_ENV, raising=False)
    assert str(state_dir()) == keys_mod.DEFAULT_STATE_DIR
    monkeypatch.setenv(keys_mod.STATE_ENV, "/srv/w")
    assert str(state_dir()) == "/srv/w"
    assert str(state_dir("/x")) == "/x"


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    return subprocess.run([sys.executable, "-m", "warden", "keys", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_keys_commands_create_list_revoke(tmp_path):
    made = _cli("create", "--tenant", "acme", "--scope", "read", "--expires", "7",
                "--state-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    text = made.stdout.strip()
    assert KeyStore(tmp_path).verify(text).tenant == "acme"
    key_id = text.split("_")[1]
    listed = _cli("list", "--state-dir", str(tmp_path))
    assert listed.returncode == 0 and key_id in listed.stdout and "live" in listed.stdout
    assert text.split("_", 2)[2] not in listed.stdout
    assert _cli("revoke", key_id, "--state-dir", str(tmp_path)).returncode == 0
    assert "revoked" in _cli("list", "--state-dir", str(tmp_path)).stdout
    again = _cli("revoke", key_id, "--state-dir", str(tmp_path))
    assert again.returncode == 1 and "no live key" in again.stderr
    bad = _cli("create", "--tenant", "acme", "--expires", "-1", "--state-dir", str(tmp_path))
    assert bad.returncode == 2


def test_serve_command_checks_its_flags(tmp_path):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    helped = subprocess.run([sys.executable, "-m", "warden", "serve", "--help"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert helped.returncode == 0
    assert all(f in helped.stdout for f in ("--host", "--port", "--state-dir", "--config"))
    bad = subprocess.run([sys.executable, "-m", "warden", "serve", "--port", "70000"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2 and "TCP port" in bad.stderr
    for text in (None, "defaults: {sandboxez: 1}\n"):
        path = tmp_path / "quotas.yaml"
        if text is not None:
            path.write_text(text)
        wrong = subprocess.run([sys.executable, "-m", "warden", "serve", "--config", str(path),
                                "--state-dir", str(tmp_path)], capture_output=True, text=True,
                               env=env, timeout=60, check=False)
        assert wrong.returncode == 1 and wrong.stderr.startswith("warden serve: ")
