"""Starting the job: its own process group, the signal mask and dispositions it must get,
the terminal's foreground, and (for a network lease) a gate it waits at until its
watchdog is armed (issue 23)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable

from singlerun.errors import SpawnError
from singlerun.exitcodes import ExitCode
from singlerun.signals import FORWARDED

# Python ignores these at start-up; the job must get the defaults (as subprocess does).
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


_OPEN = b"G"  # through the gate: the job may exec


def _spawn_error(command: str, code: int) -> SpawnError:
    if code in (errno.ENOENT, errno.ENOTDIR):
        return SpawnError(f"{command}: command not found", ExitCode.NOT_FOUND)
    return SpawnError(f"{command}: cannot execute: {os.strerror(code)}", ExitCode.CANNOT_EXECUTE)


def spawn(
    argv: list[str],
    env: dict[str, str],
    keep_fd: int | None,
    mask: set[int | signal.Signals],
    tty: int | None,
    guard: Callable[[int], None] | None,
) -> int:
    """Start the job in its own process group, with the signal mask `mask`; with `tty`, give
    it the terminal's foreground; with `guard`, call it with the group before the job may
    run (see _fork_exec)."""
    # Signals ignored when singlerun started (nohup) stay ignored for the job; the others,
    # and those Python itself ignores, get their defaults.
    reset = [s for s in FORWARDED if signal.getsignal(s) is not signal.SIG_IGN]
    if keep_fd is not None:
        os.set_inheritable(keep_fd, True)
    try:
        if tty is not None or guard is not None:
            return _fork_exec(argv, env, mask, [*reset, *_PYTHON_IGNORED], guard)
        # posix_spawn (vfork + exec): cheaper than fork() for a Python parent, and exec
        # errors come back as OSError here instead of through a pipe.
        return os.posix_spawnp(
            argv[0], argv, env, setpgroup=0, setsigmask=mask, setsigdef=[*reset, *_PYTHON_IGNORED]
        )
    except OSError as exc:
        raise _spawn_error(argv[0], exc.errno or 0) from None
    finally:
        if keep_fd is not None:
            os.close(keep_fd)


def _fork_exec(
    argv: list[str],
    env: dict[str, str],
    mask: set[int | signal.Signals],
    dfl: list[int],
    guard: Callable[[int], None] | None = None,
) -> int:
    """fork + exec, for a job in a terminal's foreground or one that needs a guard.

    Terminal: with posix_spawn, a Ctrl-Z in the microseconds before the child leaves our
    process group stops it before its exec while we wait in vfork for that exec: a hang only
    SIGKILL ends. Here the child inherits our blocked SIGTSTP, leaves our group, then
    discards a Ctrl-Z that came meanwhile (ours, still pending, is passed on to the job once
    it runs).

    Guard (a network lease's watchdog): the child waits at a gate until `guard(pgid)` has
    returned, so there is no instant in which the job runs unguarded. A singlerun killed or
    frozen between the spawn and the guard used to leave the job running past its lease,
    beside the next holder (issue 23). If singlerun dies first, the gate closes unopened and
    the child exits without running the job."""
    tstp_ignored = signal.getsignal(signal.SIGTSTP) is signal.SIG_IGN  # then it stays so
    r, w = os.pipe2(os.O_CLOEXEC)
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC) if guard is not None else (-1, -1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child execs)
        code = errno.ENOEXEC
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTSTP, signal.SIG_IGN)  # discards a pending one
            for sig in dfl if tstp_ignored else (signal.SIGTSTP, *dfl):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if guard is not None:
                os.close(gate_w)
                if os.read(gate_r, 1) != _OPEN:
                    os._exit(ExitCode.INTERNAL)  # singlerun is gone: never run unguarded
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            code = exc.errno or code
        finally:
            os.write(w, str(code).encode())
            os._exit(ExitCode.NOT_FOUND)
    os.close(w)
    if guard is not None:
        os.close(gate_r)
        try:
            with contextlib.suppress(OSError):  # the group exists before the guard learns it
                os.setpgid(pid, pid)
            guard(pid)
            os.write(gate_w, _OPEN)
        except BaseException as exc:
            os.close(r)
            os.close(gate_w)
            os.waitpid(pid, 0)  # it leaves the closed gate at once
            if isinstance(exc, OSError):  # not the command's fault: no 126/127
                raise SpawnError(f"cannot guard the job: {exc.strerror or exc}") from None
            raise
        os.close(gate_w)
    with os.fdopen(r, "rb") as pipe:
        failed = pipe.read()  # EOF at the exec (close-on-exec); an errno if it failed
    if failed:
        os.waitpid(pid, 0)
        raise OSError(int(failed), os.strerror(int(failed)))
    return pid
