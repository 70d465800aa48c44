"""pause / resume / paused on every provider (native: the cgroup freezer; docker: docker
pause). The code inside stamps the time as it runs: no stamp falls inside the window the
sandbox was paused, and stamps go on after resume. Each window edge has a margin for the
moment the freeze takes hold; nothing is asserted about speed."""

from __future__ import annotations

import time

import pytest
from warden.errors import ProviderUnavailable, SandboxPaused
from warden.wire import ops
from warden.wire.procs import parse_start

# Appends the time to a file every 10 ms of its own running, in a busy loop.
STAMPS = ("import time\nlast = 0.0\nwith open('stamps', 'a', buffering=1) as f:\n"
          "    while True:\n        now = time.time()\n        if now - last >= 0.01:\n"
          "            f.write(f'{now}\\n')\n            last = now\n")
MARGIN_S = 0.1


def _stamps(provider, box) -> list[float]:
    data = provider.read_file(box, "stamps")
    return [float(x) for x in data.split()[:-1]]  # the last line may be half written


def _wait_stamps_after(provider, box, t: float, timeout: float = 20.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = _stamps(provider, box)
        except FileNotFoundError:
            got = []
        if got and got[-1] > t:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no stamp after {t} within {timeout}s")


def test_pause_stops_every_process_and_resume_goes_on(provider, fresh):
    box = fresh()
    provider.tool_call(box, ops.PROC_START, {"argv": ["python3", "-c", STAMPS], "env": None,
                                             "env_add": None, "cwd": None, "stdin": False},
                       parse_start)
    _wait_stamps_after(provider, box, time.time())
    assert provider.paused(box) is False
    provider.pause(box)
    t_paused = time.time()
    assert provider.paused(box) is True
    with pytest.raises(SandboxPaused):
        provider.exec(box, ["true"])
    with pytest.raises(SandboxPaused):
        provider.read_file(box, "stamps")
    time.sleep(1.5)
    t_resumed = time.time()
    provider.resume(box)
    assert provider.paused(box) is False
    stamps = _wait_stamps_after(provider, box, t_resumed + MARGIN_S)
    inside = [s for s in stamps if t_paused + MARGIN_S < s < t_resumed - MARGIN_S]
    assert inside == [], f"{len(inside)} stamps while paused"
    assert any(s < t_paused for s in stamps) and stamps[-1] > t_resumed


def test_a_paused_sandbox_is_destroyed_without_resume(provider, fresh):
    box = fresh()
    provider.exec(box, ["true"])
    provider.pause(box)
    provider.destroy(box)
    assert not provider.usable(box)


def test_reclaim_is_given_or_refused_by_name(provider, fresh):
    box = fresh()
    provider.exec(box, ["true"])
    try:
        given = provider.pause(box, reclaim=True)
    except ProviderUnavailable as exc:
        assert "reclaim" in str(exc) and provider.name in str(exc)
        assert provider.paused(box) is False
    else:
        assert given >= 0 and provider.paused(box) is True
        provider.resume(box)
    assert provider.exec(box, ["echo", "on"]).stdout == b"on\n"
