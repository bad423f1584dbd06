"""A job never outlives its lease: a forked guard that kills the job's process group when
singlerun can no longer vouch for the lease.

singlerun renews a network lease from its main loop; if singlerun is SIGKILLed, frozen
(SIGSTOP, Ctrl-Z, swapped out) or starved, nothing renews it and another host may take the
key when it expires on the server. So a tiny child process, in a session of its own (a
terminal's Ctrl-Z does not stop it), holds the read end of a pipe and a deadline:
- each renewal writes a new deadline (CLOCK_MONOTONIC is one clock for every process);
- when the deadline passes, or the pipe closes without a goodbye (singlerun died), it
  SIGKILLs the job's whole process group at once and exits;
- after the goodbye (`disarm`) it kills nothing, and exits when the pipe closes (`reap`).
The deadline is measured from *before* the renewal request was sent, minus a margin, so it
always comes before the server's expiry. The guard is armed before the job may exec
(spawn.Gated's gate): there is no instant in which the job runs unguarded.
A guard forked ahead (standby.py) waits unarmed, harmless, until `arm`: until then a
goodbye or singlerun's end lets it go without killing anything.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

_DONE = b"D"
_ARM = b"A"  # + the first deadline, or nothing for none


def _standby(read_fd: int) -> bytes:
    """Unarmed: wait for the arming line; return it with whatever came after it. A goodbye,
    singlerun's end or anything unexpected ends the guard here, quietly."""
    told = b""
    with contextlib.suppress(BaseException):
        while b"\n" not in told:
            if not (chunk := os.read(read_fd, 4096)):
                break
            told += chunk
        if told.startswith(_ARM) and b"\n" in told:
            return told
    os._exit(0)


def _linger(read_fd: int) -> None:
    """Disarmed: kill nothing, ever; exit once singlerun closes the pipe (`reap`, after the
    release), so that this interpreter's exit takes no CPU from the handoff (issue 21)."""
    with contextlib.suppress(BaseException):
        while os.read(read_fd, 4096):
            pass
    os._exit(0)


def _guard(read_fd: int, pgid: int, deadline: float | None, armed: bool) -> None:
    """The child's whole life; never returns. Once armed, anything unexpected kills the job
    too. Without a deadline (--on-lease-lost continue) it waits for singlerun's end alone."""
    with contextlib.suppress(BaseException):
        os.setsid()
    buffered = b"" if armed else _standby(read_fd)
    with contextlib.suppress(BaseException):
        while True:
            *lines, buffered = buffered.split(b"\n")
            if _DONE in lines:
                _linger(read_fd)
            for line in lines:
                if line.startswith(_ARM):
                    deadline = float(line[1:]) if line[1:] else None
                elif deadline is not None:
                    deadline = float(line)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if not select.select([read_fd], [], [], remaining)[0]:
                continue
            if not (chunk := os.read(read_fd, 4096)):
                break  # singlerun is gone without saying goodbye
            buffered += chunk
    with contextlib.suppress(BaseException):
        os.killpg(pgid, signal.SIGKILL)
    os._exit(0)


class Watchdog:
    def __init__(self, pgid: int, deadline: float | None, *, armed: bool = True) -> None:
        self.pgid = pgid
        read_fd, self._write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the guard
            # Only its pipe: a copy of the job's gate, the lock or a server connection kept
            # open here would outlive a dead singlerun.
            os.closerange(3, read_fd)
            os.closerange(read_fd + 1, os.sysconf("SC_OPEN_MAX"))
            # Terminal and forwarded signals are singlerun's to act on, not the guard's.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
            _guard(read_fd, pgid, deadline, armed)
        os.close(read_fd)
        os.set_inheritable(self._write_fd, False)

    def arm(self, deadline: float | None) -> bool:
        """Arm a guard forked unarmed; False if it is gone (someone killed it)."""
        try:
            gone = os.waitpid(self.pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            gone = True
        if gone:  # reaped here: never `reap`ed again (its PID may be a new child's)
            os.close(self._write_fd)
            return False
        told = "" if deadline is None else repr(deadline)
        with contextlib.suppress(OSError):
            os.write(self._write_fd, _ARM + told.encode() + b"\n")
        return True

    def abandon(self) -> None:
        """Let an unarmed guard go: it exits without killing anything; reaped by `reap`."""
        self.disarm()

    def extend(self, deadline: float) -> None:
        with contextlib.suppress(OSError):  # the guard is gone: it has killed the job
            os.write(self._write_fd, f"{deadline!r}\n".encode())

    def disarm(self) -> None:
        """The job has ended: from now on the guard kills nothing. It exits when `reap` lets
        it go, once the key is released: a forked interpreter's exit takes a millisecond of
        CPU, which the next holder's handoff would wait for (issue 21)."""
        with contextlib.suppress(OSError):
            os.write(self._write_fd, _DONE + b"\n")
        _let_go.append(self)


_let_go: list[Watchdog] = []  # guards disarmed, not yet let go of


def reap() -> None:
    """Let every disarmed guard go and reap it: none is left running or a zombie."""
    while _let_go:
        guard = _let_go.pop()
        os.close(guard._write_fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(guard.pid, 0)
