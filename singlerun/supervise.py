"""Start the job as a supervised child and wait for it. Knows nothing about locks.

As in tini: the signals we forward and SIGCHLD are blocked, and one loop takes them with
sigwaitinfo(), so nothing runs inside a signal handler and a supervisor waiting on a job
for hours uses no CPU. The job gets its own process group (so it can be signalled as a
whole) and, when singlerun is in the foreground of a terminal, the terminal: Ctrl-C then
reaches the job exactly once, and interactive programs work.
"""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from singlerun.exitcodes import ExitCode
from singlerun.signals import FORWARDED, JOB_SIGNALS, block_job_signals, stop_self
from singlerun.spawn import spawn

if TYPE_CHECKING:  # types only: a run without a ticker never loads them
    from singlerun.spawn import Gated
    from singlerun.ticker import Stop

    class Ticker(Protocol):
        """Called every `interval` seconds while the job runs (a network lease's renewal);
        a Stop it returns stops the job: its signal, then SIGKILL `kill_after` later."""

        interval: float

        def tick(self) -> Stop | None: ...


_job_mask: set[int | signal.Signals] | None = None  # see run()


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


_JOB_CONTROL = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def _has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def _give_terminal(pgid: int) -> bool:
    """If singlerun's group is its terminal's foreground, make the job's group so."""
    foreground = _foreground_tty()
    if foreground is None:
        return False
    try:
        os.tcsetpgrp(foreground, pgid)
        return True
    except OSError:
        return False
    finally:
        os.close(foreground)


def _stop_with_job(pgid: int, sig: int, tty: int | None) -> None:
    """The job was stopped by job control (Ctrl-Z, or reading the terminal from the
    background): stop too, with the same signal, so the shell sees its job stopped and `$?`
    is 128+N as without us. On `fg`/`bg`, continue the job, giving it the terminal if the
    shell gave it to us (fg)."""
    if tty is not None and _owns(tty, pgid):
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, os.getpgrp())
    stop_self(sig)
    _give_terminal(pgid)
    _signal_group(pgid, signal.SIGCONT)


class Limit(NamedTuple):
    """--max-runtime: after `seconds`, send `signal`, then SIGKILL `kill_after` later."""

    seconds: float
    signal: int = signal.SIGTERM
    kill_after: float = 10.0


class Ended(NamedTuple):
    code: int  # the job's exit status, or 128+N if signal N killed it
    signal: int | None  # the signal that killed it, if one did
    timed_out: bool  # it outlived its Limit
    stopped: str | None = None  # why a ticker stopped it, if one did
    forwarded: bool = False  # singlerun was signalled (and passed it on) while it ran


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
    sig = os.WSTOPSIG(status)
    if sig in (signal.SIGTTIN, signal.SIGTTOU) and (
        (tty is not None and _owns(tty, pid)) or _give_terminal(pid)
    ):
        # It touched the terminal before we had handed it over (or before `fg` reached
        # us): it has the terminal now, carry on.
        _signal_group(pid, signal.SIGCONT)
    elif tty is not None or (sig in _JOB_CONTROL and _has_terminal()):
        # From a terminal's foreground any stop is mirrored; from its background (`&`),
        # job control's. Without a terminal (cron, CI) we keep running, so that a lease is
        # renewed and a stop of the job alone stays its own business.
        _stop_with_job(pid, sig, tty)
    return None


class _Escalation:
    """A signal to the job's group now, SIGKILL `kill_after` later (once, whoever asks)."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.kill_due: float | None = None

    def start(self, sig: int, kill_after: float) -> None:
        _signal_group(self.pgid, sig)
        if sig != signal.SIGKILL:
            _signal_group(self.pgid, signal.SIGCONT)  # a stopped job can act on it
        due = time.monotonic() + kill_after
        self.kill_due = due if self.kill_due is None else min(self.kill_due, due)

    def due(self, now: float) -> None:
        if self.kill_due is not None and now >= self.kill_due:
            _signal_group(self.pgid, signal.SIGKILL)
            self.kill_due = None


def _next_signal(due: float | None) -> signal.struct_siginfo | None:
    if due is None:
        return signal.sigwaitinfo(JOB_SIGNALS)
    return signal.sigtimedwait(JOB_SIGNALS, max(0.0, due - time.monotonic()))


def _wait(pid: int, tty: int | None, limit: Limit | None, ticker: "Ticker | None") -> Ended:
    now = time.monotonic()
    runtime_due = None if limit is None else now + limit.seconds
    tick_due = None if ticker is None else now + ticker.interval
    escalation = _Escalation(pid)
    timed_out, stopped, forwarded = False, None, False
    while True:
        now = time.monotonic()
        if runtime_due is not None and limit is not None and now >= runtime_due:
            runtime_due, timed_out = None, True
            escalation.start(limit.signal, limit.kill_after)
        if tick_due is not None and ticker is not None and now >= tick_due:
            verdict = ticker.tick()
            tick_due = time.monotonic() + ticker.interval
            if verdict is not None and stopped is None:
                stopped = verdict.reason
                escalation.start(verdict.signal, verdict.kill_after)
        escalation.due(now)
        dues = [d for d in (runtime_due, tick_due, escalation.kill_due) if d is not None]
        info = _next_signal(min(dues, default=None))
        if info is None:
            continue
        if info.si_signo == signal.SIGCHLD:
            status = _reaped(pid, tty)
            if status is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code >= 0:
                return Ended(code, None, timed_out, stopped, forwarded)
            return Ended(ExitCode.SIGNAL_BASE - code, -code, timed_out, stopped, forwarded)
        if info.si_signo == signal.SIGTSTP:
            _signal_group(pid, signal.SIGTSTP)  # its stop comes back as SIGCHLD: mirrored
        elif info.si_signo == signal.SIGCONT:
            _give_terminal(pid)  # `fg` of a singlerun running in the background
        elif info.si_signo in FORWARDED:
            # To the job's whole process group, as the terminal would (and as timeout(1) does).
            _signal_group(pid, info.si_signo)
            forwarded = forwarded or info.si_signo != signal.SIGWINCH


def run(
    argv: list[str],
    env: dict[str, str],
    *,
    keep_fd: int | None,
    on_started: Callable[[int], None],
    guard: Callable[[int], None] | None = None,
    limit: Limit | None = None,
    ticker: "Ticker | None" = None,
    ready: "Gated | None" = None,
) -> Ended:
    """Run argv to completion and say how it ended.

    `keep_fd` is handed to the job (and closed here once it has it). `guard` gets the job's
    process group before the job can run; `on_started`, after. `ready`: the job forked
    ahead, at its gate (standby.py). Signals stay blocked when
    this returns, so that the caller's cleanup cannot be cut short by one. If supervision
    itself fails, the job's group is killed before the error goes on: a job must never run
    on after its singlerun has let go of the key.
    """
    global _job_mask
    mask = block_job_signals()
    if _job_mask is None:  # the mask singlerun was started with, for every attempt's job
        _job_mask = mask
    mask = _job_mask
    tty = _foreground_tty()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = 0  # not started: the terminal was never handed over
    try:
        pid = spawn(argv, env, keep_fd, mask, tty, guard, ready)
        try:
            if tty is not None and _owns(tty, os.getpgrp()):  # SIGTSTP is blocked: no race
                with contextlib.suppress(OSError):
                    os.tcsetpgrp(tty, pid)
            on_started(pid)
            return _wait(pid, tty, limit, ticker)
        except BaseException:
            _signal_group(pid, signal.SIGKILL)
            raise
    finally:
        if tty is not None:
            # Only take the terminal back from our job: after Ctrl-Z and `bg` the shell owns
            # it, and taking it would leave the shell reading a terminal it lost (and exit).
            if _owns(tty, pid):
                with contextlib.suppress(OSError):
                    os.tcsetpgrp(tty, os.getpgrp())
            os.close(tty)


def pause(seconds: float, ticker: "Ticker | None") -> bool:
    """Sleep between two attempts with the job's signals still blocked (as `run` leaves
    them); the lease is kept meanwhile. True if it was cut short: a terminating signal
    (not SIGWINCH or SIGCHLD), a stop request, or a lost lease."""
    now = time.monotonic()
    end = now + seconds
    tick_due = None if ticker is None else now + ticker.interval
    while (now := time.monotonic()) < end:
        if ticker is not None and tick_due is not None and now >= tick_due:
            verdict = ticker.tick()
            if verdict is not None:
                return True
            tick_due = time.monotonic() + ticker.interval
        info = _next_signal(min(end, tick_due or end))
        if info is not None and info.si_signo == signal.SIGTSTP:
            stop_self(signal.SIGTSTP)  # Ctrl-Z between attempts: no job, just us
        elif info is not None and info.si_signo in FORWARDED and info.si_signo != signal.SIGWINCH:
            return True
    return False
