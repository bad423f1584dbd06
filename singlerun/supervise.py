"""Start the job as a supervised child and wait for it. Knows nothing about locks.

As in tini: the signals we forward and SIGCHLD are blocked, and one loop takes them with
sigwaitinfo(), so nothing runs inside a signal handler and a supervisor waiting on a job
for hours uses no CPU. The job gets its own process group (so it can be signalled as a
whole) and, when singlerun is in the foreground of a terminal, the terminal: Ctrl-C then
reaches the job exactly once, and interactive programs work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from singlerun.errors import SpawnError
from singlerun.exitcodes import ExitCode

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# SIGTTOU too: taking the terminal back from a background group would otherwise stop us.
_BLOCKED = {*FORWARDED, signal.SIGCHLD, signal.SIGTTOU}
# Python ignores these at start-up; the job must get the defaults (as subprocess does).
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


def _owns(tty: int, pgid: int) -> bool:
    try:
        return os.tcgetpgrp(tty) == pgid
    except OSError:
        return False


def _foreground_tty() -> int | None:
    """The controlling terminal, if singlerun is its foreground process group."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        if os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    os.close(fd)
    return None


def _spawn_error(command: str, code: int) -> SpawnError:
    if code in (errno.ENOENT, errno.ENOTDIR):
        return SpawnError(f"{command}: command not found", ExitCode.NOT_FOUND)
    return SpawnError(f"{command}: cannot execute: {os.strerror(code)}", ExitCode.CANNOT_EXECUTE)


def _spawn(
    argv: list[str], env: dict[str, str], keep_fd: int | None, mask: set[int | signal.Signals]
) -> int:
    """posix_spawn (vfork + exec): cheaper than fork() for a Python parent, and exec errors
    come back as OSError here instead of through a pipe."""
    # Signals ignored when singlerun started (nohup) stay ignored for the job; the others,
    # and those Python itself ignores, get their defaults.
    reset = [s for s in FORWARDED if signal.getsignal(s) is not signal.SIG_IGN]
    if keep_fd is not None:
        os.set_inheritable(keep_fd, True)
    try:
        return os.posix_spawnp(
            argv[0], argv, env, setpgroup=0, setsigmask=mask, setsigdef=[*reset, *_PYTHON_IGNORED]
        )
    except OSError as exc:
        raise _spawn_error(argv[0], exc.errno or 0) from None
    finally:
        if keep_fd is not None:
            os.close(keep_fd)


def _stop_with_job(pgid: int, tty: int) -> None:
    """The job was stopped from the terminal (Ctrl-Z): stop too, so the shell sees it; on
    `fg`/`bg`, continue the job, handing the terminal back if we got it."""
    with contextlib.suppress(OSError):
        os.tcsetpgrp(tty, os.getpgrp())
    os.kill(os.getpid(), signal.SIGSTOP)
    with contextlib.suppress(OSError):
        if os.tcgetpgrp(tty) == os.getpgrp():
            os.tcsetpgrp(tty, pgid)
    _signal_group(pgid, signal.SIGCONT)


@dataclass(frozen=True)
class Limit:
    """--max-runtime: after `seconds`, send `signal`, then SIGKILL `kill_after` later."""

    seconds: float
    signal: int = signal.SIGTERM
    kill_after: float = 10.0


@dataclass(frozen=True)
class Ended:
    code: int  # the job's exit status, or 128+N if signal N killed it
    signal: int | None  # the signal that killed it, if one did
    timed_out: bool  # it outlived its Limit


def signal_number(text: str) -> int:
    """TERM, SIGTERM, term or 15 -> 15; ValueError for anything else."""
    name = text.strip().upper()
    if name.isdigit() and int(name) in signal.valid_signals():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reaped(pid: int, tty: int | None) -> int | None:
    """The job's wait status if it has ended; handles job-control stops on the way."""
    wpid, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
    if wpid == 0:
        return None
    if not os.WIFSTOPPED(status):
        return status
    if tty is not None:
        if os.WSTOPSIG(status) in (signal.SIGTTIN, signal.SIGTTOU) and _owns(tty, pid):
            # It touched the terminal before we had handed it over: carry on.
            _signal_group(pid, signal.SIGCONT)
        else:
            _stop_with_job(pid, tty)
    return None


def _wait(pid: int, tty: int | None, limit: Limit | None) -> Ended:
    # --max-runtime escalates at `due`: first its signal, then SIGKILL, then nothing more.
    due = None if limit is None else time.monotonic() + limit.seconds
    timed_out = False
    while True:
        if due is not None and time.monotonic() >= due:
            assert limit is not None
            _signal_group(pid, signal.SIGKILL if timed_out else limit.signal)
            due = None if timed_out else time.monotonic() + limit.kill_after
            timed_out = True
            continue
        info: signal.struct_siginfo | None
        if due is None:
            info = signal.sigwaitinfo(_BLOCKED)
        else:
            info = signal.sigtimedwait(_BLOCKED, max(0.0, due - time.monotonic()))
        if info is None:
            continue
        if info.si_signo == signal.SIGCHLD:
            status = _reaped(pid, tty)
            if status is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code >= 0:
                return Ended(code, None, timed_out)
            return Ended(ExitCode.SIGNAL_BASE - code, -code, timed_out)
        if info.si_signo in FORWARDED:
            # To the job's whole process group, as the terminal would (and as timeout(1) does).
            _signal_group(pid, info.si_signo)


def run(
    argv: list[str],
    env: dict[str, str],
    *,
    keep_fd: int | None,
    on_started: Callable[[int], None],
    limit: Limit | None = None,
) -> Ended:
    """Run argv to completion and say how it ended.

    `keep_fd` is handed to the job (and closed here once it has it). Signals stay blocked
    when this returns, so that the caller's cleanup cannot be cut short by one.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    tty = _foreground_tty()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = _spawn(argv, env, keep_fd, mask)
        if tty is not None:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(tty, pid)
        on_started(pid)
        return _wait(pid, tty, limit)
    finally:
        if tty is not None:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(tty, os.getpgrp())
            os.close(tty)
