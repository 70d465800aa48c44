"""A seccomp filter that a fork server's child installs on itself, on top of the sandbox's:
the child runs as the same user as the fork server, so without it the kernel would let the
child signal, renice or re-limit the server and hear from it (kill(2), fcntl(F_SETOWN), ...).

The filter refuses, with EPERM, every system call that names a process or group the child
must not reach — the sandbox's init (1), the fork server's processes, their process groups,
"every process" (-1) and "my group" (0) — and the few calls that reach other processes through
a descriptor or a user id, which no target needs:

* kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open, prlimit64,
  sched_setaffinity, sched_setscheduler, sched_setparam, sched_setattr: the first argument
  is checked (a child's own pid and its descendants' pass);
* fcntl F_SETOWN/F_SETOWN_EX and ioctl FIOSETOWN/SIOCSPGRP: SIGIO could be aimed at a server;
* pidfd_send_signal (a /proc/<pid> directory is a pidfd for it), setpriority (PRIO_USER
  renices every process of the user), ioprio_set: refused outright;
* shmget, msgget, semget, mq_open: refused outright. SysV IPC objects and POSIX message
  queues outlive the child that made them, in the sandbox's IPC namespace, where no restore
  reaches them: the next input would find what this one left there.

The program is built once by the fork server's forker (``build``) and installed on the forker
itself (``install``), after setup: every child inherits it, so no input pays for it, and the
forker, which only kills its own children and what they left, needs nothing it refuses. Reading another process's memory needs more than this filter:
the sandbox's filter denies ptrace and process_vm_*, and the fork server makes itself
non-dumpable so that /proc/<pid>/mem is closed to a process without capabilities.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

__all__ = ["Guard", "build", "prctl"]

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# name -> (x86_64, aarch64) numbers, from the kernel's syscall tables.
_NR = {
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
    "pidfd_open": (434, 434), "prlimit64": (302, 261), "sched_setaffinity": (203, 122),
    "sched_setscheduler": (144, 119), "sched_setparam": (142, 118), "sched_setattr": (314, 274),
    "fcntl": (72, 25), "ioctl": (16, 29), "pidfd_send_signal": (424, 424),
    "setpriority": (141, 140), "ioprio_set": (251, 30),
    "shmget": (29, 194), "msgget": (68, 186), "semget": (64, 190), "mq_open": (240, 180),
}
_PID_FIRST = ("tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
              "prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
              "sched_setattr")
_REFUSED = ("pidfd_send_signal", "setpriority", "ioprio_set", "shmget", "msgget", "semget",
            "mq_open")
_F_SETOWN, _F_SETOWN_EX, _FIOSETOWN, _SIOCSPGRP = 8, 15, 0x8901, 0x8902

_LD_ABS_W, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_ALLOW, _DENY = 0x7FFF0000, 0x00050000 | errno.EPERM
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _arg(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits on a little-endian machine


def build(pids: tuple[int, ...], groups: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """The filter's instructions (code, jt, jf, k): ``pids`` are processes the child must not
    reach, ``groups`` process groups."""
    arch = os.uname().machine
    if arch not in _AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"the fork server's child filter knows no {arch} numbers")
    col = 0 if arch == "x86_64" else 1
    pid_values = sorted({1, *pids} - {0})
    kill_values = sorted({0, *pid_values, 0xFFFFFFFF, *((-g) & 0xFFFFFFFF for g in groups)})
    # Each block: (syscall, argument index, refused values); no index: refused outright.
    blocks: list[tuple[int, int | None, list[int]]] = [(_NR["kill"][col], 0, kill_values)]
    blocks += [(_NR[n][col], 0, pid_values) for n in _PID_FIRST]
    blocks += [(_NR["fcntl"][col], 1, [_F_SETOWN, _F_SETOWN_EX]),
               (_NR["ioctl"][col], 1, [_FIOSETOWN, _SIOCSPGRP])]
    blocks += [(_NR[n][col], None, []) for n in _REFUSED]
    # ("deny-if", value) items become jumps to the final deny once the length is known.
    body: list[tuple[Any, ...]] = []
    for nr, arg, values in blocks:
        if arg is None:
            body.append(("deny-if", nr))
            continue
        # Not this syscall: skip the argument's load, its compares and the allow; the
        # accumulator still holds the number for the next block.
        body.append((_JEQ_K, 0, len(values) + 2, nr))
        body.append((_LD_ABS_W, 0, 0, _arg(arg)))
        body.extend(("deny-if", v) for v in values)
        body.append((_RET_K, 0, 0, _ALLOW))
    prog: list[tuple[int, int, int, int]] = [
        (_LD_ABS_W, 0, 0, 4), (_JEQ_K, 1, 0, _AUDIT_ARCH[arch]), (_RET_K, 0, 0, _ALLOW),
        (_LD_ABS_W, 0, 0, 0)]
    total = len(prog) + len(body) + 2  # + allow, deny
    for item in body:
        at = len(prog)
        if item[0] == "deny-if":
            jump = total - 1 - (at + 1)  # to the final deny
            if jump > 255:
                raise OSError(errno.E2BIG, "the fork server's child filter is too long")
            prog.append((_JEQ_K, jump, 0, item[1]))
        else:
            prog.append((item[0], item[1], item[2], item[3]))
    prog += [(_RET_K, 0, 0, _ALLOW), (_RET_K, 0, 0, _DENY)]
    return prog


def prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Guard:
    """A built filter, ready for ``install`` in a child: no allocation there beyond one call."""

    def __init__(self, pids: tuple[int, ...], groups: tuple[int, ...]) -> None:
        ins = build(pids, groups)
        self._raw = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *i) for i in ins))
        self._prog = _Prog(len(ins), ctypes.addressof(self._raw))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                                ctypes.c_ulong]
        self._ptr = ctypes.cast(ctypes.pointer(self._prog), ctypes.c_void_p)

    def prctl(self, option: int, arg: int) -> None:
        if self._prctl(option, arg, None, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl({option}): {os.strerror(err)}")

    def install(self) -> None:
        self.prctl(_PR_SET_NO_NEW_PRIVS, 1)
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._ptr, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"installing the child's seccomp filter: {os.strerror(err)}")
