"""Every signal singlerun handles, and when (docs/CONTRACT.md §7).

1. Start-up (launch.py, before this module loads): Ctrl-C ends singlerun at once, as SIGINT.
2. Until the job starts (`catch_interrupts`): a terminating signal raises Interrupted, which
   unwinds through the queue, the lock and the store, so nothing is left held; the exit
   status is 128+N. A handler cannot run inside C code, so `checkpoint()` re-raises one
   that was swallowed there.
3. While the job runs (supervise.py): the job's signals are blocked and taken with
   sigwaitinfo, passed on to its process group (JOB_SIGNALS); nothing can interrupt the
   bookkeeping half-done.
4. After the job: they stay blocked through release and the history row, so a late signal
   changes neither the exit status nor what is left behind.
5. At the exit (`die_of_signal`): after a job's Ctrl-C or Ctrl-\\, singlerun dies of SIGINT
   or SIGQUIT itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from singlerun.errors import Interrupted

# Passed on to the job's process group, as a terminal would (and as timeout(1) does).
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# Blocked while a job runs, and taken with sigwaitinfo. SIGTTOU: taking the terminal back
# from a background group would otherwise stop us. SIGTSTP: a Ctrl-Z that reaches us (before
# the job has the terminal) is passed on to the job, whose stop we then mirror; we never
# stop halfway through handing the terminal over. SIGCONT (it continues us all the same):
# after `fg`, the terminal the shell gave us is handed on to the job.
JOB_SIGNALS = {*FORWARDED, signal.SIGCHLD, signal.SIGTTOU, signal.SIGTSTP, signal.SIGCONT}

_interrupted: list[int] = []  # terminating signals received before the job started
# The terminal's SIGINT or SIGQUIT that ended the job (or singlerun before the job started):
# singlerun then dies of it itself after cleaning up, as timeout(1) does, so that a calling
# shell's loop stops on Ctrl-C or Ctrl-\ (and bash says "Quit"). Any other signal is
# reported as 128+N, as the spec says.
DIE_OF = (signal.SIGINT, signal.SIGQUIT)
die_of: int | None = None


def _interrupt(signum: int, _frame: object) -> None:
    global die_of
    _interrupted.append(signum)
    if len(_interrupted) > 1:
        return  # the first one is already unwinding: another must not interrupt that
    if signum in DIE_OF:
        die_of = signum
    raise Interrupted(signum)  # breaks a sleeping flock() out of the wait


def _swallowed(info: sys.UnraisableHookArgs) -> None:
    # Python prints and drops an exception raised inside a callback (an import lock's
    # weakref callback, a finalizer): the signal is then taken up at the next checkpoint.
    if not isinstance(info.exc_value, Interrupted):
        sys.__unraisablehook__(info)


def catch_interrupts() -> None:
    """Until the job starts, a terminating signal ends singlerun cleanly (leaving the queue,
    releasing what it holds); signals that were ignored at start stay ignored."""
    sys.unraisablehook = _swallowed
    for sig in FORWARDED:
        if sig != signal.SIGWINCH and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


def checkpoint() -> None:
    if _interrupted:
        raise Interrupted(_interrupted[0])


def job_ended_by(signum: int | None) -> None:
    global die_of
    die_of = signum if signum in DIE_OF else None


def settle() -> None:
    """The run's outcome is decided (a conflict is being reported, say): block the
    terminating signals, so that one arriving now neither interrupts the report with a
    traceback nor changes the exit status (as during release, phase 4)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [s for s in FORWARDED if s != signal.SIGWINCH])


def block_job_signals() -> set[int | signal.Signals]:
    """Block JOB_SIGNALS; return the mask as it was."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, JOB_SIGNALS)


def stop_self(sig: int) -> None:
    """Stop now with `sig` (SIGTSTP, SIGTTIN, ...); returns once continued."""
    os.kill(os.getpid(), sig)
    if sig in JOB_SIGNALS:  # blocked while a job runs: let it through for a moment
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})


def die_of_signal(code: int) -> None:
    """End by the SIGINT or SIGQUIT that ended the job, if `code` (the exit status) says so,
    so that a calling shell stops its loop ($? is 130 or 131). SIGQUIT's default action
    dumps core: singlerun's own core is of no use to anyone, so none is written."""
    if die_of is None or code != 128 + die_of:
        return
    if die_of == signal.SIGQUIT:
        import resource

        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(die_of, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {die_of})
    os.kill(os.getpid(), die_of)
