"""The host-id allocator: one id per live sandbox, never the same one in two processes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest
from warden.errors import InvalidArgument, SandboxSetupError
from warden.host import identity

BASE = 3_000_000_000


def _pool(tmp_path, count=4):
    return identity.IdPool(BASE, count, str(tmp_path / "ids.lock"))


def _other_process(lock: str, count: int, take: int) -> list[int]:
    """Ids another process gets from a pool on the same lock file, held until it exits."""
    code = textwrap.dedent(f"""
        import json, sys
        from warden.host import identity
        pool = identity.IdPool({BASE}, {count}, {lock!r})
        got = []
        for _ in range({take}):
            try:
                got.append(pool.acquire().id)
            except Exception as exc:
                got.append(type(exc).__name__)
        print(json.dumps(got))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         env=env, timeout=60)
    return json.loads(out.stdout)


def test_ids_lie_above_the_setup_id_and_are_distinct(tmp_path):
    pool = _pool(tmp_path)
    got = [pool.acquire() for _ in range(4)]
    ids = {h.id for h in got}
    assert ids == set(range(BASE + 1, BASE + 5))
    assert all(h.setup_id == BASE for h in got)
    assert got[0].config() == {"host_id": got[0].id, "outside_base": BASE}


def test_exhausted_range_is_a_setup_error_saying_what_to_do(tmp_path):
    pool = _pool(tmp_path, count=2)
    pool.acquire(), pool.acquire()
    with pytest.raises(SandboxSetupError) as exc:
        pool.acquire()
    assert exc.value.step == "host-id" and exc.value.errno == errno.EAGAIN
    assert "WARDEN_UID_COUNT" in str(exc.value)


def test_released_id_is_handed_out_again_and_release_is_idempotent(tmp_path):
    pool = _pool(tmp_path, count=1)
    h = pool.acquire()
    h.release()
    h.release()
    assert pool.acquire().id == h.id


def test_another_process_never_gets_an_id_this_one_holds(tmp_path):
    pool = _pool(tmp_path, count=4)
    mine = {pool.acquire().id for _ in range(2)}
    theirs = _other_process(str(tmp_path / "ids.lock"), 4, 3)
    # Two left for it, then the range is exhausted for it.
    assert theirs[2] == "SandboxSetupError"
    assert set(theirs[:2]) == set(range(BASE + 1, BASE + 5)) - mine


def test_ids_of_a_process_that_died_are_free_again(tmp_path):
    lock = str(tmp_path / "ids.lock")
    first = _other_process(lock, 2, 2)
    assert sorted(first) == [BASE + 1, BASE + 2]
    # The process exited holding both (it never released them): the kernel dropped its locks.
    pool = _pool(tmp_path, count=2)
    assert {pool.acquire().id, pool.acquire().id} == set(first)


def test_forked_child_does_not_believe_it_holds_the_parents_ids(tmp_path):
    pool = _pool(tmp_path, count=2)
    held = pool.acquire()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            pool._forget()  # what os.register_at_fork does for the process's pool
            other = pool.acquire().id
            os.write(w, str(other).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = int(os.read(r, 64))
    os.close(r)
    os.waitpid(pid, 0)
    assert got != held.id


@pytest.mark.parametrize("base,count", [(0, 10), (1000, 10), (2**32 - 10, 100), (BASE, 0)])
def test_range_must_be_unprivileged_and_valid(tmp_path, base, count):
    with pytest.raises(InvalidArgument):
        identity.IdPool(base, count, str(tmp_path / "ids.lock"))


def test_unusable_lock_file_is_a_setup_error(tmp_path):
    (tmp_path / "file").write_text("")
    pool = identity.IdPool(BASE, 4, str(tmp_path / "file" / "ids.lock"))
    with pytest.raises(SandboxSetupError) as exc:
        pool.acquire()
    assert exc.value.step == "host-id" and "WARDEN_ID_LOCK" in str(exc.value)


def test_subuid_overlaps_name_the_lines_that_meet_the_range():
    text = "\n".join([
        "# comment",
        "alice:100000:65536",
        "warden:2000000000:65537",        # warden's own reservation
        "bob:1999999990:20",              # reaches into the range
        "carol:2000065536:10",            # starts on the range's last id
        "dave:2000065537:10",             # just above
        "broken-line",
    ])
    assert identity.overlaps(text, 2_000_000_000, 65536) == [
        "bob:1999999990:20", "carol:2000065536:10"]
