"""The op names of the worker protocol: what a request's "op" may say.

A request is a map ``{"id": int, "op": str, ...fields}``; the fields of each op are listed
beside its name. The worker serves the first group itself; the tool layer
(warden.guest.toolops) adds the second in every sandbox made for warden.Sandbox or a plugin.
"""

from __future__ import annotations

__all__ = [
    "BATCH", "CALL", "CALL_FN", "CGROUP_STATS", "ENTRY", "EXEC", "EXEC_PYTHON", "FILE_ENTRIES",
    "FILE_MKDIR", "FILE_OPS", "FILE_READ_CHUNK", "FILE_RENAME", "FILE_STAT", "FILE_WRITE_CHUNK",
    "LIST_FILES", "PING", "PROC_CLOSE_STDIN", "PROC_LIST", "PROC_OPS", "PROC_READ", "PROC_RESIZE",
    "PROC_SIGNAL", "PROC_START", "PROC_WRITE", "READ_FILE", "REMOVE_FILE", "SHUTDOWN",
    "TOOL_OPS", "WORKER_OPS", "WRITE_FILE",
]

# -- the worker's own ---------------------------------------------------------------------------
CALL = "call"                # action, payload: the plugin's handle(action, payload)
BATCH = "batch"              # action, items: handle_batch(action, items), or handle per item
ENTRY = "entry"              # -> whether the plugin's entry loaded (else its load error)
EXEC_PYTHON = "exec_python"  # code: run in the worker, stdout and stderr captured
PING = "ping"                # -> {"pong": True, "pid": int}
SHUTDOWN = "shutdown"        # the worker answers None and exits

# -- the tool layer's ---------------------------------------------------------------------------
EXEC = "exec"                # argv, stdin, timeout, cwd, env, env_add, stream, stream_cap:
                             # a command in the sandbox; with stream, {"id", "stream", "data"}
                             # frames come before the reply (warden.wire.streams)
WRITE_FILE = "write_file"    # path, data
READ_FILE = "read_file"      # path -> bytes
LIST_FILES = "list_files"    # path -> [{"name", "type", "size"}]
REMOVE_FILE = "remove_file"  # path: a file, a link itself, or a directory with its contents
CALL_FN = "call_fn"          # source and/or name, payload: a function defined in the sandbox
# The workspace beyond whole files (warden.guest.fileops):
FILE_STAT = "file_stat"      # path -> {"path", "type", "size", "mode", "mtime"}
FILE_MKDIR = "file_mkdir"    # path, parents
FILE_RENAME = "file_rename"  # src, dst
FILE_ENTRIES = "file_entries"  # path, recursive -> [{"path", "type", "size", "mode", "mtime"}]
FILE_WRITE_CHUNK = "file_write_chunk"  # path, offset, data (<= 1 MiB), create
FILE_READ_CHUNK = "file_read_chunk"    # path, offset, size (<= 1 MiB) -> bytes
# Background processes (warden.guest.procs; replies checked by warden.wire.procs):
PROC_START = "proc_start"    # argv, env, env_add, cwd, stdin (bool), tty ([cols, rows] or
                             # nil: a pseudo-terminal, argv nil a login shell) -> {"pid"}
PROC_READ = "proc_read"      # pid, offset, wait, max -> chunks from offset, the exit if over
PROC_WRITE = "proc_write"    # pid, data -> bytes taken by the process's stdin
PROC_CLOSE_STDIN = "proc_close_stdin"  # pid
PROC_SIGNAL = "proc_signal"  # pid, signal: to the process's group
PROC_LIST = "proc_list"      # -> [{"pid", "argv", "started", "cpu"}] of live processes
PROC_RESIZE = "proc_resize"  # pid, size [cols, rows]: a terminal's window size

# -- the Docker in-container program's ------------------------------------------------------------
CGROUP_STATS = "cgroup_stats"  # -> the container cgroup's counters

WORKER_OPS = frozenset({CALL, BATCH, ENTRY, EXEC_PYTHON, PING, SHUTDOWN})
FILE_OPS = frozenset({WRITE_FILE, READ_FILE, LIST_FILES, REMOVE_FILE, FILE_STAT, FILE_MKDIR,
                      FILE_RENAME, FILE_ENTRIES, FILE_WRITE_CHUNK, FILE_READ_CHUNK})
PROC_OPS = frozenset({PROC_START, PROC_READ, PROC_WRITE, PROC_CLOSE_STDIN, PROC_SIGNAL,
                      PROC_LIST, PROC_RESIZE})
TOOL_OPS = frozenset({EXEC, CALL_FN}) | FILE_OPS | PROC_OPS
