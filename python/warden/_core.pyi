# Type stubs of warden._core, the native module. Keep in step with cpp/bindings/.
from collections.abc import Sequence
from typing import Any

# --- jail (cpp/bindings/jail.cc) -------------------------------------------------------------

# The spawn config of PreparedSandbox and fork_sandboxed: a dict with no key other than
# area_binds, cgroup_fd, cgroup_procs, cpu_time_s, cwd, disk_bytes, file_size_bytes, fork_mode,
# hold_mount_ns, hostname, init_path, inside_id, last_cap, netns_fd, open_files, outside_base,
# pass_fds, ro_binds, ro_paths, seccomp, writable. Another key raises ValueError naming it.
# area_binds: [(host directory, sandbox path)] of warden's own host areas, attached as
# idmapped read-only mounts (cpp/jail/idmap.h); one that cannot be is SandboxSetupError
# at step "idmap".

class PreparedSandbox:
    """A sandbox made whole ahead of its command (namespaces, root, limits, identity,
    seccomp), its init waiting for one request; started at most once.

    The constructor raises ValueError for a config key it does not know or when
    config["host_id"] (the sandbox's own host id, from warden.host.identity) is missing, and
    warden.SandboxSetupError(step, errno) when a set-up step fails."""

    def __init__(self, config: dict[str, Any]) -> None: ...
    @property
    def pid(self) -> int:
        """The sandbox's init, as the host sees it."""
    def ready(self) -> bool:
        """Whether the sandbox still waits for its command."""
    def start(self, argv: Sequence[str], env: Sequence[str], exec_candidates: Sequence[str],
              cwd: str = "/workspace", stdin: bytes | None = None, timeout_s: float = 0.0,
              output_cap: int = 16777216) -> dict[str, Any]:
        """Run the command (the first of `exec_candidates` that exists) and return its
        outcome; the wall deadline counts from here. Raises SandboxSetupError (step "chdir",
        "execve", ...) when the command could not be started; the sandbox is gone then."""
    def close(self) -> None:
        """Kill and reap the sandbox if it was never started (only in the process that
        made it)."""

def fork_sandboxed(config: dict[str, Any], *, sibling: bool = False
                   ) -> tuple[int, int, int, int]:
    """Fork a worker into a fresh sandbox whose pid 1 is warden-init: (pid, pidfd,
    mount_ns_fd, status_fd) of the init in the parent, (0, -1, -1, -1) in the worker.
    mount_ns_fd is -1 unless config["hold_mount_ns"]: a reference to the sandbox's mount
    namespace, so that its teardown waits for the caller's close(). status_fd is the read end
    of the init's status pipe (final_status). With sibling, the init is a child of the
    caller's parent, which reaps it, so the caller may exit once it has the sandbox. Raises
    ValueError, before forking, for a config key it does not know."""

def final_status(status_fd: int, timeout_s: float) -> dict[str, Any] | None:
    """The record a sandbox's init writes as it exits: wait_status (of its command or worker,
    exactly as wait(2) gave it), disk_free_bytes, disk_total_bytes, cpu_user_us, cpu_sys_us,
    max_rss_kb. None when the pipe closed without one (the init was killed first). Raises
    TimeoutError when the init still lives after timeout_s (negative: no bound)."""

def netns_create() -> int:
    """A new network namespace with lo up, as a descriptor (the caller closes it)."""

# --- ipc (cpp/bindings/ipc.cc) ---------------------------------------------------------------

def wait_readable(fd: int, spin_ns: int, timeout_ms: int) -> int:
    """Wait until fd is readable: polling without sleeping for up to spin_ns, then asleep for
    the rest of timeout_ms (-1: no limit). 0: timed out, 1: readable while spinning, 2:
    readable after sleeping, 3: a signal came and its handlers ran (wait again). OSError
    when poll(2) fails."""

DECODE_COST_PER_BYTE: int

def decode_cost(body: bytes | bytearray | memoryview, budget: int, max_depth: int) -> int:
    """Upper estimate in bytes of the Python objects that decoding the one msgpack value in
    body would make, found without decoding it and without the GIL; -1: over budget (the
    walk stopped there), -2: not exactly one msgpack value or an extension type, -3:
    containers nested deeper than max_depth."""

# --- seccomp (cpp/bindings/seccomp.cc) -------------------------------------------------------

def seccomp_compile(allow_inet: bool = False) -> bytes:
    """The default policy compiled to classic BPF (struct sock_filter array)."""

def seccomp_policy(allow_inet: bool = False) -> dict[str, Any]:
    """The policy tables: allowed, denied, argument rules, killed architectures."""

# --- scan (cpp/bindings/scan.cc) -------------------------------------------------------------

class ScanPolicy:
    """A compiled scan policy; built by warden.Policy._compiled()."""

    def __init__(self, forbidden_modules: list[str], allowed_modules: list[str],
                 forbidden_builtins: list[str], forbidden_names: list[str],
                 forbidden_attributes: list[str], package: str) -> None: ...

def scan_source(data: bytes, is_text: bool, policy: ScanPolicy
                ) -> tuple[list[tuple[str, int, int, str]], tuple[int, int, int]]:
    """Scan one source (GIL released): ([(rule, line, col, message)], (bytes, tokens, steps))."""

def scan_paths(paths: list[str], policy: ScanPolicy, threads: int, max_file_bytes: int
               ) -> list[tuple[bool, list[tuple[str, int, int, str]] | tuple[str, int]]]:
    """Scan files on C++ threads (0 = one per CPU), refusing links, files that are not regular
    and files over max_file_bytes; per path (True, findings) or (False, (reason id, errno)).
    Reason ids: os-error (errno set), link, directory, fifo, socket, char-device, block-device,
    special-file, too-large, no-memory, internal."""

# --- end scan --------------------------------------------------------------------------------
