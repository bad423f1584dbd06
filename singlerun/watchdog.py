"""A job never outlives its lease: a forked guard that kills the job's process group when
singlerun can no longer vouch for the lease.

singlerun renews a network lease from its main loop; if singlerun is SIGKILLed, frozen
(SIGSTOP, Ctrl-Z, swapped out) or starved, nothing renews it and another host may take the
key when it expires on the server. So a tiny child process, in a session of its own (a
terminal's Ctrl-Z does not stop it), holds the read end of a pipe and a deadline:
- each renewal writes a new deadline (CLOCK_MONOTONIC is one clock for every process);
- when the deadline passes, or the pipe closes without a goodbye (singlerun died), it
  SIGKILLs the job's whole process group at once and exits;
- the goodbye (`disarm`) ends it quietly.
The deadline is measured from *before* the renewal request was sent, minus a margin, so it
always comes before the server's expiry. The guard is armed before the job may exec
(supervise._fork_exec's gate): there is no instant in which the job runs unguarded.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

_DONE = b"D"


def _guard(read_fd: int, pgid: int, deadline: float | None) -> None:
    """The child's whole life; never returns. Anything unexpected kills the job too.
    Without a deadline (--on-lease-lost continue) it waits for singlerun's end alone."""
    with contextlib.suppress(BaseException):
        os.setsid()
        buffered = b""
        while deadline is None or (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read_fd], [], [], None if deadline is None else remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break  # singlerun is gone without saying goodbye
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            if _DONE in lines:
                os._exit(0)
            if lines and deadline is not None:
                deadline = float(lines[-1])
    with contextlib.suppress(BaseException):
        os.killpg(pgid, signal.SIGKILL)
    os._exit(0)


class Watchdog:
    def __init__(self, pgid: int, deadline: float | None) -> None:
        read_fd, self._write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the guard
            # Only its pipe: a copy of the job's gate, the lock or a server connection kept
            # open here would outlive a dead singlerun.
            os.closerange(3, read_fd)
            os.closerange(read_fd + 1, os.sysconf("SC_OPEN_MAX"))
            # Terminal and forwarded signals are singlerun's to act on, not the guard's.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
            _guard(read_fd, pgid, deadline)
        os.close(read_fd)
        os.set_inheritable(self._write_fd, False)

    def extend(self, deadline: float) -> None:
        with contextlib.suppress(OSError):  # the guard is gone: it has killed the job
            os.write(self._write_fd, f"{deadline!r}\n".encode())

    def disarm(self) -> None:
        """The job has ended: let the guard go. It is reaped by `reap`, once the key is let
        go of: a forked interpreter takes milliseconds to exit (issue 21: a handoff)."""
        with contextlib.suppress(OSError):
            os.write(self._write_fd, _DONE + b"\n")
        os.close(self._write_fd)
        _let_go.append(self.pid)


_let_go: list[int] = []  # guards disarmed, not yet reaped


def reap() -> None:
    """Reap every guard let go of (each has exited, or is about to): none is left a zombie."""
    while _let_go:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(_let_go.pop(), 0)
