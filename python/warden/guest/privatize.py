"""Shared writable mappings that setup left, made private to each fork server child.

A child of the forker inherits its mappings: private ones copy-on-write, but a MAP_SHARED
mapping (``mmap.mmap(-1, n)``, multiprocessing's Value/Array heap, ``shared_memory``, a
mapped /dev/shm or memfd file) is the same pages in the forker and in every child, so what
one input wrote there the next input would read. After setup, and before the first child,
the forker replaces each such mapping in place (see mmap(2), MAP_FIXED) with a private
anonymous mapping holding the same bytes and the same protection. Addresses do not move, so
the objects setup holds (an mmap object, a ctypes array, a SharedMemory's buffer) keep
working; what changes is that writes no longer reach the file or other processes, which in a
fork server are none: every process but the forker and the collector is killed after each
input, and files are put back by warden.guest.scratch.

Left as they are: read-only shared mappings (no input can change them) and a writable
shared mapping of a file that is also mapped executable (libffi's double mapping for
closures, which must stay shared with its executable half).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["Mapping", "privatize_shared", "shared_writable"]

_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS = 0x02, 0x10, 0x20


class Mapping:
    def __init__(self, start: int, end: int, perms: str, node: tuple[str, str]) -> None:
        self.start, self.end, self.perms, self.node = start, end, perms, node

    @property
    def prot(self) -> int:
        return ((_PROT_READ if "r" in self.perms else 0) | (_PROT_WRITE if "w" in self.perms
                else 0) | (_PROT_EXEC if "x" in self.perms else 0))


def _maps(text: str) -> list[Mapping]:
    out = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        lo, _, hi = fields[0].partition("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), fields[1], (fields[3], fields[4])))
    return out


def shared_writable(text: str) -> list[Mapping]:
    """The mappings of /proc/<pid>/maps ``text`` that privatize_shared replaces."""
    maps = _maps(text)
    executable = {m.node for m in maps if m.perms[3:] == "s" and "x" in m.perms
                  and m.node[1] != "0"}
    return [m for m in maps if m.perms[1] == "w" and m.perms[3] == "s"
            and m.node not in executable]


def privatize_shared() -> int:
    """Replace this process's shared writable mappings with private copies; how many."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        todo = shared_writable(f.read())
    if not todo:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for m in todo:
        size = m.end - m.start
        if "r" not in m.perms:
            _check(libc.mprotect(m.start, size, m.prot | _PROT_READ), "mprotect")
        content = ctypes.string_at(m.start, size)
        got = libc.mmap(m.start, size, _PROT_READ | _PROT_WRITE,
                        _MAP_PRIVATE | _MAP_FIXED | _MAP_ANONYMOUS, -1, 0)
        if got != m.start:
            _check(-1, "mmap")
        ctypes.memmove(m.start, content, size)
        del content
        if m.prot != _PROT_READ | _PROT_WRITE:
            _check(libc.mprotect(m.start, size, m.prot), "mprotect")
    return len(todo)


def _check(rc: int, call: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call} while making setup's shared mappings private: "
                      f"{os.strerror(err)}")
