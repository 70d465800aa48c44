"""Policy.load reads a file that may come with a plugin bundle: as untrusted input."""

from __future__ import annotations

import os
import threading

import pytest
import warden
from warden.scan import MAX_POLICY_BYTES


def test_a_policy_file_loads(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("forbid_modules: [requests]\n")
    assert warden.Policy.load(p).module_forbidden("requests")


def test_a_link_is_refused_without_its_target_in_the_error(tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("forbid_modules: [the-secret-line]\n")
    link = tmp_path / "policy.yaml"
    os.symlink(secret, link)
    with pytest.raises(warden.ManifestError, match="symbolic link") as info:
        warden.Policy.load(link)
    assert "the-secret-line" not in str(info.value)


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    out: dict[str, BaseException] = {}

    def load() -> None:
        try:
            warden.Policy.load(fifo)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # release the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not t.is_alive(), "Policy.load waited on a FIFO"
    assert isinstance(out.get("error"), warden.ManifestError)


def test_an_oversized_file_is_refused_unread(tmp_path):
    p = tmp_path / "policy.yaml"
    with open(p, "wb") as f:
        f.truncate(MAX_POLICY_BYTES + 1)   # sparse: refused by its size, never read
    with pytest.raises(warden.ManifestError, match="at most"):
        warden.Policy.load(p)


def test_yaml_aliases_are_refused(tmp_path):
    lol = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lol.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lol) + "\nforbid_modules: *l\n")
    with pytest.raises(warden.ManifestError, match="aliases"):
        warden.Policy.load(p)
