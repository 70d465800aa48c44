"""Black-box tests of warden's seccomp filter on the real kernel.

Hostile probes (helpers/seccomp_probes.c) run under the compiled filter, installed by
helpers/seccomp_exec.c exactly as warden's child installs it (no_new_privs, then
seccomp(SECCOMP_SET_MODE_FILTER)). Every probe also runs once without the filter, as a control:
its arguments are harmless, so unfiltered it fails with some other errno (ENOENT, EBADF, EINVAL,
...) or succeeds without effect on the host, which shows that the EPERM seen under the filter
comes from the filter and not from the kernel's own checks.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from warden import _core

from tests.conftest import require

HELPERS = Path(__file__).parent / "helpers"

# Probes whose call the policy refuses with EPERM (see helpers/seccomp_probes.c).
DENIED = [
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "unshare_newuser",
    "setns",
    "clone_newns",
    "clone_newuts",
    "clone_newipc",
    "clone_newuser",
    "clone_newpid",
    "clone_newnet",
    "clone_newcgroup",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "io_setup",
    "io_submit",
    "io_getevents",
    "io_pgetevents",
    "io_cancel",
    "io_destroy",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "clock_settime",
    "settimeofday",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "swapon",
    "swapoff",
    "reboot",
    "chroot",
    "vmsplice",
    "sethostname",
    "ioctl_tiocsti",
    "ioctl_tiocsti_high",
    "ioctl_tiocsti_allhigh",
    "ioctl_tioclinux",
    "ioctl_tioclinux_high",
    "socket_netlink",
    "socket_netlink_high",
    "socket_packet",
    "socket_alg",
    "socket_vsock",
    "socketpair_netlink",
    "personality_norandom",
]
# Probes whose call the policy allows: the filter must not change their answer.
ALLOWED = [
    "clone_plain",
    "pthread",
    "ioctl_tcgets",
    "ioctl_fionread",
    "socket_unix",
    "socketpair_unix",
    "personality_query",
    "getpid",
]
INET = ["socket_inet", "socket_inet6"]


def _compile(src: Path, out: Path, *extra: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    require(cc is not None, "a C compiler (cc) is needed to build the seccomp probes")
    subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(out), str(src), *extra],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("seccomp")
    runner = _compile(HELPERS / "seccomp_exec.c", d / "seccomp_exec")
    probes = _compile(HELPERS / "seccomp_probes.c", d / "seccomp_probes", "-pthread")
    strict = d / "strict.bpf"
    strict.write_bytes(_core.seccomp_compile(False))
    inet = d / "inet.bpf"
    inet.write_bytes(_core.seccomp_compile(True))
    return {"runner": runner, "probes": probes, "strict": strict, "inet": inet}


def _under(bins, which: str | None, *argv: str, **kw) -> subprocess.CompletedProcess:
    cmd = (
        list(argv) if which is None else [str(bins["runner"]), str(bins[which]), *argv]
    )
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, check=False, **kw)


def _probe_table(proc: subprocess.CompletedProcess) -> dict[str, tuple[int, int]]:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    table = {}
    for line in proc.stdout.decode().splitlines():
        name, rc, err = line.split()
        table[name] = (int(rc), int(err))
    return table


@pytest.fixture(scope="module")
def results(bins):
    return {
        "control": _probe_table(_under(bins, None, str(bins["probes"]))),
        "strict": _probe_table(_under(bins, "strict", str(bins["probes"]))),
        "inet": _probe_table(_under(bins, "inet", str(bins["probes"]))),
    }


def test_probe_lists_cover_every_probe(results):
    enosys = {"clone3", "statmount"}
    assert set(results["control"]) == set(DENIED) | set(ALLOWED) | set(INET) | enosys


@pytest.mark.parametrize("name", DENIED)
def test_refused_call_gets_eperm(results, name):
    for variant in ("strict", "inet"):
        rc, err = results[variant][name]
        assert (rc, err) == (-1, errno.EPERM), (
            f"{name} under the {variant} filter: rc={rc} errno={err}"
        )
    rc, err = results["control"][name]
    require(
        err != errno.EPERM,
        f"{name} answers EPERM even without the filter on this host; the probe cannot tell "
        f"the filter's refusal from the kernel's",
    )


@pytest.mark.parametrize("name", ALLOWED)
def test_allowed_call_answers_as_without_filter(results, name):
    assert results["strict"][name] == results["control"][name]
    assert results["inet"][name] == results["control"][name]


def test_clone3_answers_enosys_so_libc_falls_back_to_clone(results):
    assert results["strict"]["clone3"] == (-1, errno.ENOSYS)
    assert results["control"]["clone3"][1] != errno.ENOSYS
    # glibc's pthread_create and posix_spawn try clone3 first: they still work.
    assert results["strict"]["pthread"] == (0, 0)


def test_newer_call_with_older_equivalent_answers_enosys(results):
    # statmount: callers fall back to /proc/self/mountinfo on ENOSYS.
    assert results["strict"]["statmount"] == (-1, errno.ENOSYS)


def test_inet_sockets_only_when_asked(results):
    for name in INET:
        assert results["strict"][name] == (-1, errno.EPERM)
        assert results["inet"][name] == results["control"][name]


def test_i386_syscall_kills_the_process(bins):
    control = _under(bins, None, str(bins["probes"]), "i386")
    require(
        control.returncode == 0 and control.stdout.startswith(b"i386 "),
        "this kernel has no i386 emulation (int 0x80 does not reach the syscall table)",
    )
    assert int(control.stdout.split()[1]) > 0
    filtered = _under(bins, "strict", str(bins["probes"]), "i386")
    assert filtered.returncode == -signal.SIGSYS, filtered
    assert b"i386" not in filtered.stdout


def test_x32_syscall_kills_the_process(bins):
    # Killed whether or not the kernel enables x32: the filter sees the number first.
    filtered = _under(bins, "strict", str(bins["probes"]), "x32")
    assert filtered.returncode == -signal.SIGSYS, filtered
    assert b"x32" not in filtered.stdout


def _pythons() -> list[str]:
    """This interpreter, plus sibling CPython 3.10+ installs (pyenv's layout) when present."""
    found = {os.path.realpath(sys.executable)}
    for exe in Path(sys.base_prefix).parent.glob("3.1[0-9]*/bin/python3"):
        found.add(os.path.realpath(exe))
    return sorted(found)


@pytest.mark.parametrize("python", _pythons())
def test_python_threads_subprocess_asyncio_work(bins, tmp_path, python):
    code = textwrap.dedent(
        """
        import asyncio, concurrent.futures, hashlib, os, socket, subprocess, tempfile, threading
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            print(sum(ex.map(lambda i: i * i, range(100))))
        out = subprocess.run(["/bin/sh", "-c", "echo spawned | tr a-z A-Z"],
                             capture_output=True, check=True).stdout.decode().strip()
        print(out)
        async def main():
            proc = await asyncio.create_subprocess_exec("/bin/echo", "async", stdout=-1)
            data, _ = await proc.communicate()
            await asyncio.sleep(0.01)
            return data.decode().strip()
        print(asyncio.run(main()))
        a, b = socket.socketpair()
        a.sendall(b"pair"); print(b.recv(4).decode())
        print(len(os.urandom(16)))
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "f")
            with open(p, "wb") as f:
                f.write(b"x" * 1000)
            print(os.stat(p).st_size, hashlib.sha256(open(p, "rb").read()).hexdigest()[:8])
        import multiprocessing as mp
        with mp.get_context("fork").Pool(2) as pool:
            print(sum(pool.map(abs, [-1, -2, -3])))
        """
    )
    r = _under(bins, "strict", python, "-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    lines = r.stdout.decode().split()
    expect_hash = __import__("hashlib").sha256(b"x" * 1000).hexdigest()[:8]
    assert lines == [
        str(sum(i * i for i in range(100))),
        "SPAWNED",
        "async",
        "pair",
        "16",
        "1000",
        expect_hash,
        "6",
    ]


def test_shell_pipelines_and_coreutils_work(bins, tmp_path):
    script = (
        "set -e; mkdir -p d/e; printf 'b\\na\\nc\\n' > d/in; sort d/in | tr a-z A-Z | head -n 2;"
        " cp d/in d/e/copy; ln -s copy d/e/link; cat d/e/link | wc -l;"
        " find d -type f | sort; stat -c %s d/in; sha256sum d/in | cut -c1-8;"
        " (sleep 0.01 & wait); ls d/e | sort; rm -r d; echo done"
    )
    expect = _under(bins, None, "/bin/sh", "-c", script, cwd=tmp_path)
    assert expect.returncode == 0, expect.stderr
    r = _under(bins, "strict", "/bin/sh", "-c", script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == expect.stdout
    assert r.stdout.endswith(b"done\n")
    for shell in ("/bin/bash", "/bin/busybox"):
        if not os.path.exists(shell):
            continue
        argv = (
            [shell, "sh", "-c", script]
            if shell.endswith("busybox")
            else [shell, "-c", script]
        )
        r = _under(bins, "strict", *argv, cwd=tmp_path)
        assert r.returncode == 0, (shell, r.stderr.decode(errors="replace"))
        assert r.stdout == expect.stdout, shell


# --- The same probes through warden.run: the filter as warden's own child installs it. -------
#
# Inside, the probes run as an unprivileged user, so an EPERM there could also come from a
# missing capability; the host runs above tell the two apart. Here the point is that warden's
# pipeline installs this filter, last, in every sandbox: calls that an unprivileged process is
# allowed without seccomp (netlink and packet sockets in its own namespaces, process_vm_readv on
# itself, personality, io_uring_setup's argument check, clone3) must answer as the filter says.

# The sandbox's writable areas are noexec; the probe binary is executed from a memfd.
_MEMFD_EXEC = (
    "import os, sys\n"
    "fd = os.memfd_create('seccomp_probes')\n"
    "os.write(fd, sys.stdin.buffer.read())\n"
    "os.execv(f'/proc/self/fd/{fd}', ['seccomp_probes', *sys.argv[1:]])\n"
)


def _in_warden(bins, *args: str):
    import warden

    return warden.run(
        [sys.executable, "-c", _MEMFD_EXEC, *args],
        stdin=bins["probes"].read_bytes(),
        limits=warden.Limits(wall_time_s=30),
    )


@pytest.fixture(scope="module")
def sandboxed(bins):
    r = _in_warden(bins)
    assert r.ok, (r.reason, r.exit_code, r.stderr.decode(errors="replace"))
    table = {}
    for line in r.stdout.decode().splitlines():
        name, rc, err = line.split()
        table[name] = (int(rc), int(err))
    return table


@pytest.mark.parametrize("name", DENIED)
def test_refused_call_gets_eperm_in_warden_run(sandboxed, name):
    assert sandboxed[name] == (-1, errno.EPERM)


def test_filter_is_what_answers_in_warden_run(sandboxed):
    # ENOSYS for clone3 can only come from the filter; the allowed calls still work under it.
    assert sandboxed["clone3"] == (-1, errno.ENOSYS)
    for name in ALLOWED:
        if name == "ioctl_tcgets":
            assert sandboxed[name] == (-1, errno.ENOTTY)
        else:
            assert sandboxed[name] == (0, 0), name


@pytest.mark.parametrize("arch", ["i386", "x32"])
def test_foreign_arch_call_ends_the_run_with_reason_seccomp(bins, arch):
    r = _in_warden(bins, arch)
    assert (r.reason, r.signal) == ("seccomp", signal.SIGSYS), (r, r.stderr)
    assert arch.encode() not in r.stdout


def test_running_sandbox_has_exactly_warden_filter(tmp_path):
    """From the host: the sandboxed process is in seccomp filter mode with no_new_privs, and
    the kernel reports one filter on it (no other layer stacked or missing)."""
    import threading
    import time
    import uuid

    import warden

    marker = f"warden-seccomp-{uuid.uuid4().hex}"
    box = {}

    def go():
        # The marker goes into argv so that the host can find this process and no other.
        box["r"] = warden.run(
            [sys.executable, "-c", "import sys, time; time.sleep(30)", marker],
            limits=warden.Limits(wall_time_s=20),
        )

    t = threading.Thread(target=go)
    t.start()
    pid = None
    deadline = time.monotonic() + 15
    while pid is None and time.monotonic() < deadline and t.is_alive():
        for p in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if marker.encode() in f.read().split(b"\0"):
                        pid = int(p)
                        break
            except OSError:
                continue
        time.sleep(0.02)
    try:
        assert pid is not None, "the sandboxed process did not show up"
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        assert status["Seccomp"] == "2"
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp_filters"] == "1"
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        t.join()
    assert box["r"].signal == signal.SIGKILL


# --- The Docker provider: the generated profile, applied by runc, answers the same. ----------


@pytest.fixture(scope="module")
def docker_run(bins, tmp_path_factory):
    """Runs the probes (linked statically: any image will do) in a container of warden's image
    with warden's profile; returns (exit status, stdout)."""
    from tests.conftest import IN_CI
    from tests.providers.conftest import DockerEngine, _engine_answers

    engine = DockerEngine()
    if os.environ.get("DOCKER_HOST") and _engine_answers():
        engine.available = True
    elif IN_CI or os.environ.get("WARDEN_TEST_DOCKER") == "1":
        engine.start()
    require(
        engine.available,
        engine.why
        or "no Docker engine: set DOCKER_HOST, or WARDEN_TEST_DOCKER=1 to start a private "
        "dockerd (scripts/dockerd-start)",
    )
    import docker
    from warden.host.seccomp_profile import docker_security_opt
    from warden.providers.docker import images

    image = images.ensure_image()
    d = tmp_path_factory.mktemp("seccomp-docker")
    d.chmod(0o755)  # the image's user is not root: pytest's directories are 0700
    _compile(HELPERS / "seccomp_probes.c", d / "seccomp_probes", "-pthread", "-static")
    client = docker.from_env(timeout=60)

    def run(*args: str) -> tuple[int, bytes]:
        c = client.containers.run(
            image,
            ["/probes/seccomp_probes", *args],
            network_mode="none",
            security_opt=[docker_security_opt(), "no-new-privileges"],
            volumes={str(d): {"bind": "/probes", "mode": "ro"}},
            detach=True,
        )
        try:
            status = c.wait(timeout=120)["StatusCode"]
            return status, c.logs(stdout=True, stderr=False)
        finally:
            c.remove(force=True)

    try:
        yield run
    finally:
        client.close()
        if engine.started:
            engine.stop()


def test_docker_profile_answers_like_the_native_filter(docker_run, results):
    status, out = docker_run()
    assert status == 0, out
    table = {}
    for line in out.decode().splitlines():
        name, rc, err = line.split()
        table[name] = (int(rc), int(err))
    assert table == results["strict"]


@pytest.mark.parametrize("arch", ["i386", "x32"])
def test_docker_profile_kills_foreign_arch_calls(docker_run, arch):
    status, out = docker_run(arch)
    assert status == 128 + signal.SIGSYS, (status, out)
