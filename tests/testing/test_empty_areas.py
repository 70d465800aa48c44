"""Areas that setup left empty are found empty again after each input, whatever call the input
used to put a name there (on tmpfs warden reads only the directory's size: every way of making
a name in it must change that size)."""

from __future__ import annotations

SETUP = r'''
import os, socket

def make():
    os.mkdir("/tmp/d")
    with open("/tmp/d/f", "w") as f:
        f.write("x")
    os.link("/tmp/d/f", "/tmp/hard")
    os.rename("/tmp/d/f", "/tmp/moved")
    os.symlink("/etc/passwd", "/tmp/link")
    os.mkfifo("/tmp/fifo")
    os.mknod("/dev/shm/node", 0o600)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("/dev/shm/sock")
    os.replace("/tmp/hard", "/tmp/replaced")
    os.rename("/tmp/d", "/tmp/dir-moved")
    with open("/workspace/w", "w") as f:
        f.write("w")

def target(what):
    if what == "make":
        make()
    return {d: sorted(os.listdir(d)) for d in ("/tmp", "/dev/shm", "/workspace")}
'''


def test_every_kind_of_name_an_input_made_in_an_empty_area_is_gone_for_the_next(fs):
    made = fs.run("make")
    assert made.outcome == "ok", made.describe()
    assert made.value["/tmp"] == ["dir-moved", "fifo", "link", "moved", "replaced"]
    assert made.value["/dev/shm"] == ["node", "sock"] and made.value["/workspace"] == ["w"]
    assert fs.run("look").value == {"/tmp": [], "/dev/shm": [], "/workspace": []}
