"""Which mappings warden.guest.privatize makes private after a fork server's setup (read from
/proc/<pid>/maps); that it works is tested for real in tests/security/test_forkserver_inputs.py."""

from __future__ import annotations

from warden.guest.privatize import shared_writable


def test_mappings_made_private_are_those_shared_and_writable():
    maps = "\n".join([
        "7f0000000000-7f0000001000 rw-s 00000000 00:01 1234    /dev/zero (deleted)",
        "7f0000001000-7f0000002000 rw-p 00000000 00:00 0 ",
        "7f0000002000-7f0000003000 r--s 00000000 00:1a 55      /dev/shm/ro",
        "7f0000003000-7f0000004000 rw-s 00000000 00:1a 77      /tmp/ffiXXXX (deleted)",
        "7f0000004000-7f0000005000 r-xs 00000000 00:1a 77      /tmp/ffiXXXX (deleted)",
        "7f0000005000-7f0000006000 -w-s 00000000 00:1a 88      /memfd:x (deleted)",
    ])
    assert [(m.start, m.prot) for m in shared_writable(maps)] == [
        (0x7f0000000000, 3), (0x7f0000005000, 2)]
