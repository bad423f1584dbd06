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


def dispositions() -> list[int]:
    """The signals the job gets at their defaults: those not ignored when singlerun started
    (nohup's stay ignored for the job), and those Python itself ignores."""
    return [*(s for s in FORWARDED if signal.getsignal(s) is not signal.SIG_IGN), *_PYTHON_IGNORED]


def spawn(
    argv: list[str],
    env: dict[str, str],
    keep_fd: int | None,
    mask: set[int | signal.Signals],
    tty: int | None,
    guard: Callable[[int], None] | None,
    ready: Gated | None = None,
) -> int:
    """Start the job in its own process group, with the signal mask `mask`; with `tty`, give
    it the terminal's foreground; with `guard`, call it with the group before the job may
    run (see Gated). `ready`: the job forked ahead (standby.py), used if it still fits."""
    if keep_fd is not None:
        os.set_inheritable(keep_fd, True)
    try:
        if ready is not None and (more := ready.fits(argv, env)) is not None:
            return ready.release(more, guard)
        if tty is not None or guard is not None:
            return Gated(argv, env, mask, dispositions()).release({}, guard)
        # posix_spawn (vfork + exec): cheaper than fork() for a Python parent, and exec
        # errors come back as OSError here instead of through a pipe.
        return os.posix_spawnp(
            argv[0], argv, env, setpgroup=0, setsigmask=mask, setsigdef=dispositions()
        )
    except OSError as exc:
        raise _spawn_error(argv[0], exc.errno or 0) from None
    finally:
        if keep_fd is not None:
            os.close(keep_fd)


class Gated:
    """The job forked (fork, not posix_spawn) and held at a gate until `release`d: for a job
    in a terminal's foreground, or one that needs a guard.

    Terminal: with posix_spawn, a Ctrl-Z in the microseconds before the child leaves our
    process group stops it before its exec while we wait in vfork for that exec: a hang only
    SIGKILL ends. Here the child inherits our blocked SIGTSTP, leaves our group, then
    discards a Ctrl-Z that came meanwhile (ours, still pending, is passed on to the job once
    it runs).

    Guard (a network lease's watchdog): the child waits at the gate until `guard(pgid)` has
    returned, so there is no instant in which the job runs unguarded. A singlerun killed or
    frozen between the spawn and the guard used to leave the job running past its lease,
    beside the next holder (issue 23). If singlerun dies first, the gate closes unopened and
    the child exits without running the job.

    Forked ahead (standby.py), it waits at the gate while its singlerun waits for the key:
    the variables only the grant tells (the fencing token) pass through the gate."""

    def __init__(
        self, argv: list[str], env: dict[str, str], mask: set[int | signal.Signals], dfl: list[int]
    ) -> None:
        self.argv, self.env = argv, env
        tstp_ignored = signal.getsignal(signal.SIGTSTP) is signal.SIG_IGN  # then it stays so
        self._exec_r, w = os.pipe2(os.O_CLOEXEC)
        gate_r, self._gate_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover (the child execs)
            code = errno.ENOEXEC
            try:
                os.close(self._gate_w)
                os.setpgid(0, 0)
                signal.signal(signal.SIGTSTP, signal.SIG_IGN)  # discards a pending one
                for sig in dfl if tstp_ignored else (signal.SIGTSTP, *dfl):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                with os.fdopen(gate_r, "rb") as gate:
                    told = gate.read()  # until the parent closes its end
                if told[:1] != _OPEN:
                    os._exit(ExitCode.INTERNAL)  # singlerun is gone: never run unguarded
                extra = told[1:].decode(errors="surrogateescape")  # as os.environ's
                more = (e.partition("=") for e in extra.split("\0") if e)
                env.update({k: v for k, _, v in more})
                os.execvpe(argv[0], argv, env)
            except OSError as exc:
                code = exc.errno or code
            finally:
                os.write(w, str(code).encode())
                os._exit(ExitCode.NOT_FOUND)
        os.close(w)
        os.close(gate_r)
        with contextlib.suppress(OSError):  # the group exists before a guard learns it
            os.setpgid(self.pid, self.pid)

    def fits(self, argv: list[str], env: dict[str, str]) -> dict[str, str] | None:
        """What `env` adds to the environment the child was forked with, if it can run
        (argv) with `env` and has not died meanwhile (someone killed it); else None, and
        it is let go of."""
        if argv == self.argv and all(k in env for k in self.env):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.pid, os.WNOHANG)[0] == 0:
                    return {k: v for k, v in env.items() if self.env.get(k) != v}
                self.pid = 0  # reaped already
        self.abandon()
        return None

    def release(self, more: dict[str, str], guard: Callable[[int], None] | None) -> int:
        """Guard the child, then let it exec with the variables `more`; its PID once it has
        exec'd. OSError if the exec failed; if the guard fails, the child never runs."""
        pid = self.pid
        if guard is not None:
            try:
                guard(pid)
            except BaseException as exc:
                self.abandon()
                if isinstance(exc, OSError):  # not the command's fault: no 126/127
                    raise SpawnError(f"cannot guard the job: {exc.strerror or exc}") from None
                raise
        extra = "\0".join(f"{k}={v}" for k, v in more.items())
        told = _OPEN + extra.encode(errors="surrogateescape")
        with contextlib.suppress(BrokenPipeError):  # killed meanwhile: reaped as the job
            os.write(self._gate_w, told)  # the child reads until the end: never stuck
        os.close(self._gate_w)
        self._gate_w, self.pid = -1, 0
        with os.fdopen(self._exec_r, "rb") as pipe:
            failed = pipe.read()  # EOF at the exec (close-on-exec); an errno if it failed
        if failed:
            os.waitpid(pid, 0)
            raise OSError(int(failed), os.strerror(int(failed)))
        return pid

    def abandon(self) -> None:
        """The job is not to run (the key was not taken, or the guard failed): the child
        leaves the closed gate at once and is reaped."""
        if self._gate_w < 0:
            return
        os.close(self._gate_w)
        os.close(self._exec_r)
        self._gate_w = -1
        if self.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0
