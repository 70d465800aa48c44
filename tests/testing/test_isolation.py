"""What one input does is not visible to the next, and a hostile input cannot reach the fork
server's processes, its pipes or any other input's data: each is asserted from inside the
sandbox, by code that tries."""

from __future__ import annotations

import os
import secrets

import warden

SETUP = '''
import ctypes, errno, fcntl, gc, os, re, signal, threading, time

counter = 0
# What the sandbox's /tmp held before setup (the way to warden's own read-only binds, when the
# host keeps its Python under /tmp): not setup's, not an input's.
BEFORE = set(os.listdir("/tmp"))
with open("/tmp/kept", "w") as f:
    f.write("from setup")

def others():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())

def state():
    return {"counter": counter, "tmp": sorted(set(os.listdir("/tmp")) - BEFORE),
            "kept": open("/tmp/kept").read(), "threads": threading.active_count(),
            "fds": sorted(os.listdir("/proc/self/fd")), "env": os.environ.get("WARDEN_T"),
            "procs": len(others())}

def dirty():
    global counter
    counter += 100
    open("/tmp/left-behind", "w").write("x")
    with open("/tmp/kept", "w") as f:
        f.write("changed by an input")
    os.chmod("/tmp", 0o500)
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    os.open("/dev/null", os.O_RDONLY)
    os.environ["WARDEN_T"] = "set"
    if os.fork() == 0:          # a straggler that leaves the input's process group
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
        time.sleep(60)
    return state()

def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def attack():
    me, parent = os.getpid(), os.getppid()
    out = {}
    for pid in others():
        out[f"kill {pid}"] = attempt(lambda pid=pid: os.kill(pid, signal.SIGKILL))
        out[f"pidfd {pid}"] = attempt(lambda pid=pid: os.pidfd_open(pid))
        out[f"mem {pid}"] = attempt(lambda pid=pid: os.close(os.open(f"/proc/{pid}/mem", os.O_RDWR)))
        out[f"renice {pid}"] = attempt(lambda pid=pid: os.setpriority(os.PRIO_PROCESS, pid, 19))
    out["kill -1"] = attempt(lambda: os.kill(-1, signal.SIGKILL))
    out["killpg 0"] = attempt(lambda: os.kill(0, signal.SIGKILL))
    out["killpg parent"] = attempt(lambda: os.killpg(os.getpgid(parent), signal.SIGKILL))
    def sigio():
        a, b = __import__("socket").socketpair()
        fcntl.fcntl(a.fileno(), fcntl.F_SETOWN, parent)
    out["F_SETOWN parent"] = attempt(sigio)
    out["prlimit parent"] = attempt(lambda: __import__("resource").prlimit(parent, 7, (16, 16)))
    # Its descriptors: 0 input, 1 /dev/null, 2 stderr, 3 its result (and the listing's own).
    out["fds"] = sorted(os.listdir("/proc/self/fd"))
    os.write(3, b"garbage for the result pipe")
    os.write(2, b"garbage for stderr")
    return out

def scan(prefix):
    """Every string after ``prefix`` in this process's writable memory and its objects."""
    found = set()
    pat = re.compile(re.escape(prefix.encode()) + rb"[0-9a-f]{8,32}")
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            found.update(m.group().decode() for m in pat.finditer(data))
    for obj in gc.get_objects():
        if isinstance(obj, (list, tuple, dict)):
            for item in (obj.values() if isinstance(obj, dict) else obj):
                if isinstance(item, str) and item.startswith(prefix) and len(item) > len(prefix):
                    found.add(item)
    return sorted(found)

def target(x):
    kind = x[0]
    if kind == "state":
        return state()
    if kind == "dirty":
        return dirty()
    if kind == "attack":
        return attack()
    if kind == "secret":
        return x[1]
    if kind == "scan":
        return scan(x[1])
'''


def test_each_input_starts_from_setups_state(fs):
    first = fs.run(("state",)).value
    assert first["counter"] == 0 and first["tmp"] == ["kept"] and first["kept"] == "from setup"
    dirty = fs.run(("dirty",)).value
    assert dirty["counter"] == 100 and "left-behind" in dirty["tmp"] and dirty["procs"] > first["procs"]
    for _ in range(3):
        assert fs.run(("state",)).value == first


def test_hostile_input_cannot_reach_the_server_or_its_pipes(fs):
    v = fs.run(("attack",))
    # Its own result pipe was written garbage: its own verdict only, never the next one's.
    assert v.outcome == "crash"
    assert fs.run(("state",)).outcome == "ok"
    # The attack's report, sent by an input that reports and nothing else.
    report = fs.run(("attack",))
    assert report.outcome == "crash"
    clean = warden.ForkServer(SETUP.replace('os.write(3, b"garbage for the result pipe")', "")
                              .replace('os.write(2, b"garbage for stderr")', ""),
                              per_input=warden.Limits(wall_time_s=5))
    with clean:
        out = clean.run(("attack",)).value
        assert out["fds"] in (["0", "1", "2", "3"], ["0", "1", "2", "3", "4"])
        allowed = {k: r for k, r in out.items() if k != "fds" and r == "allowed"}
        assert allowed == {}, allowed
        assert all(r in ("EPERM", "EACCES") for k, r in out.items() if k != "fds"), out
        assert clean.run(("state",)).outcome == "ok"


def test_no_input_sees_another_inputs_input_or_result(fs):
    tokens = [secrets.token_hex(12) for _ in range(3)]
    before, after = f"secret-{tokens[0]}", f"secret-{tokens[2]}"
    verdicts = list(fs.map([("secret", before), ("scan", "secret-"), ("secret", after)], jobs=1))
    assert verdicts[0].value == before and verdicts[2].value == after
    found = verdicts[1].value
    assert verdicts[1].outcome == "ok"
    assert before not in found and after not in found
    assert not any(t in s for s in found for t in (tokens[0], tokens[2]))


def test_the_scan_finds_what_is_there(fs):
    # The scan that finds nothing above does find a value that is in the child's memory: its
    # own input.
    mine = f"secret-{secrets.token_hex(12)}"
    assert mine in fs.run(("scan", "secret-", mine)).value
    assert os.environ.get("WARDEN_T") is None
