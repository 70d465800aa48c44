"""warden.Terminal: a shell (or any program) on a pseudo-terminal inside a Sandbox.

The pty comes from the sandbox's own devpts instance (cpp/jail mounts one at /dev/pts with
``newinstance``; /dev/ptmx points into it), so its numbers and its terminals are the
sandbox's alone. The program runs in a session of its own with the pty as its controlling
terminal: ``isatty()`` is true, job control works, and ``\\x03`` written to it interrupts its
foreground process group, as the kernel's line discipline does for any terminal. TIOCSTI
(pushing input into a terminal) and TIOCLINUX stay refused by the sandbox's seccomp policy.
"""

from __future__ import annotations

import signal
import time

from warden.errors import InvalidArgument, ProcessNotFound
from warden.sandboxes.process import Process
from warden.wire import ops
from warden.wire.procs import gone

__all__ = ["Terminal", "check_size"]


def check_size(cols: object, rows: object) -> list[int]:
    for name, value in (("cols", cols), ("rows", rows)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFF:
            raise InvalidArgument(name, value, "a whole number from 1 to 65535")
    return [cols, rows]  # type: ignore[list-item]


class Terminal(Process):
    """A program on a pseudo-terminal in the sandbox (``Sandbox.terminal``). Its output, the
    terminal's, comes as one stream ("stdout"). ``write`` types into it; ``read`` returns
    what it printed; ``wait`` and ``kill`` are those of a Process."""

    def read(self, timeout: float | None = None) -> bytes:
        """What the terminal printed since the last read: waits until there is some, the
        program has ended (then b"" once all was read), or ``timeout`` seconds passed
        (then b"")."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        for chunks in self._chunks(deadline):
            return b"".join(d for _, d in chunks)
        return b""

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size; the program gets SIGWINCH."""
        size = check_size(cols, rows)

        def parse(value: object) -> bool:
            return gone(value)

        if self._tool(ops.PROC_RESIZE, {"size": size}, parse):
            raise ProcessNotFound(self.pid, self._box.id)

    def close(self) -> None:
        """Hang up: SIGHUP to the terminal's programs, then SIGKILL to what is left of its
        group once the hangup was given a moment (up to 2 s)."""
        if self.poll() is not None:
            return
        self.kill(signal.SIGHUP)
        deadline = time.monotonic() + 2.0
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.returncode is None:
            self.kill(signal.SIGKILL)
