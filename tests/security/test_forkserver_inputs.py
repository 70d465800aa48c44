"""A fork server's input leaves nothing for the next one: not in /dev/shm (a writable tmpfs of
every sandbox, beside /tmp and /workspace), not in the sandbox's IPC namespace (SysV shared
memory and message queues, POSIX message queues outlive the child that made them). Each is
tried for real by one input and looked for by the next. Nor in a shared mapping that setup
made: each input sees setup's bytes there, whatever the one before it wrote."""

from __future__ import annotations

import errno

import warden

SETUP = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
IPC_CREAT = 0o1000
KEY = 0x5EED

def leave():
    out = {}
    try:
        with open("/dev/shm/left-by-input", "w") as f:
            f.write("x")
        out["dev_shm"] = "written"
    except OSError as exc:
        out["dev_shm"] = exc.errno
    for name, call in (("sysv_shm", lambda: libc.shmget(KEY, 4096, IPC_CREAT | 0o600)),
                       ("sysv_msg", lambda: libc.msgget(KEY, IPC_CREAT | 0o600)),
                       ("sysv_sem", lambda: libc.semget(KEY, 1, IPC_CREAT | 0o600)),
                       ("posix_mq", lambda: libc.mq_open(b"/left-by-input",
                                                         os.O_CREAT | os.O_RDWR, 0o600, None))):
        got = call()
        out[name] = got if got >= 0 else -ctypes.get_errno()
    return out

def find():
    return {"dev_shm": os.path.exists("/dev/shm/left-by-input"),
            "sysv_shm": libc.shmget(KEY, 0, 0) >= 0,
            "sysv_msg": libc.msgget(KEY, 0) >= 0,
            "sysv_sem": libc.semget(KEY, 0, 0) >= 0,
            "posix_mq": libc.mq_open(b"/left-by-input", os.O_RDWR, 0, None) >= 0}

def target(what):
    return leave() if what == "leave" else find()
'''


def test_an_input_leaves_nothing_in_dev_shm_or_the_ipc_namespace_for_the_next():
    with warden.ForkServer(SETUP, per_input=warden.Limits(wall_time_s=5)) as fs:
        left = fs.run("leave").value
        found = fs.run("find").value
    # /dev/shm is writable (the input may use it) but put back after it ...
    assert left["dev_shm"] == "written"
    # ... and objects of the IPC namespace, which nothing could put back, are not made.
    assert {k: v for k, v in left.items() if k != "dev_shm"} == dict.fromkeys(
        ("sysv_shm", "sysv_msg", "sysv_sem", "posix_mq"), -errno.EPERM)
    assert found == {"dev_shm": False, "sysv_shm": False, "sysv_msg": False,
                     "sysv_sem": False, "posix_mq": False}


SHARED_SETUP = r'''
import ctypes, mmap, multiprocessing, os
from multiprocessing import shared_memory
# Python's mmap.mmap(-1, n) is MAP_SHARED: without warden's fix every child forked after setup
# shares its pages. So do multiprocessing's Value (its heap is a shared mapping), a
# SharedMemory block and a MAP_SHARED mapping of a file in /dev/shm.
board = mmap.mmap(-1, 4096)
board[:5] = b"setup"
counter = multiprocessing.Value("i", 7)
block = shared_memory.SharedMemory(create=True, size=4096)
block.buf[:5] = b"block"
fd = os.open("/dev/shm/mapped", os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"filed" + bytes(4091))
filemap = mmap.mmap(fd, 4096)

def seen():
    with open("/dev/shm/mapped", "rb") as f:
        on_disk = f.read(5)
    return [bytes(board[:5]), counter.value, bytes(block.buf[:5]), bytes(filemap[:5]), on_disk]

def target(what):
    if what == "write":
        board[:5] = b"dirty"
        counter.value += 1
        block.buf[:5] = b"dirty"
        filemap[:5] = b"dirty"
        filemap.flush()
    return seen()
'''


def test_an_input_cannot_change_a_shared_mapping_that_setup_left_for_the_next():
    with warden.ForkServer(SHARED_SETUP, per_input=warden.Limits(wall_time_s=5)) as fs:
        # The input itself sees its writes, through the same objects setup made ...
        assert fs.run("write").value == [b"dirty", 8, b"dirty", b"dirty", b"filed"]
        # ... and the next input starts from what setup left, again and again.
        for _ in range(2):
            assert fs.run("read").value == [b"setup", 7, b"block", b"filed", b"filed"]
            assert fs.run("write").value[1] == 8

