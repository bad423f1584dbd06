"""A network waiter's job and watchdog, forked while it waits for the key (issue 21).

A network lease's job must not run before its watchdog is armed (issue 23), so it is
forked and held at a gate (spawn.Gated) rather than started by posix_spawn, and the
watchdog is a second fork. Done at the handoff, the two forks (each a copy of an
interpreter with a network client loaded) were most of a queue's drain time on Redis.
Forked ahead, they wait beside the waiter: the job at its gate, the watchdog unarmed and
harmless. At the handoff the watchdog is armed, the gate opened with what the grant adds
to the environment (the fencing token), and the job execs. If singlerun dies meanwhile,
both see their pipe close and exit without running or killing anything.
"""

from __future__ import annotations

import contextlib
import signal

from singlerun.identity import process_start_time
from singlerun.signals import JOB_SIGNALS
from singlerun.spawn import Gated, dispositions
from singlerun.watchdog import Watchdog, reap


class Standby:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        """Fork the job (`argv` with `env`) and its watchdog; if the system cannot fork now,
        nothing (the handoff forks them, and says why if it cannot either). Done before the
        store's client is imported: each fork is a copy of this process, and a copy of
        the smaller one costs less to make, to keep and to end (redis-py more than doubles
        the interpreter's memory, and ending processes was most of a drain's CPU)."""
        self.job: Gated | None = None
        self.watchdog: Watchdog | None = None
        # The job's signals are blocked until both are kept here: a Ctrl-C now must neither
        # reach a child before it has set its own handling nor lose one of them.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, JOB_SIGNALS)
        try:
            with contextlib.suppress(OSError):
                self.job = Gated(argv, env, mask, dispositions())
                self.watchdog = Watchdog(self.job.pid, None, armed=False)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def ahead(self) -> tuple[int, float | None] | None:
        """The job's PID and start time, for the grant to name it (Store.acquire's `job`)."""
        return None if self.job is None else (self.job.pid, process_start_time(self.job.pid))

    def take_job(self) -> Gated | None:
        job, self.job = self.job, None
        return job

    def take_watchdog(self) -> Watchdog | None:
        watchdog, self.watchdog = self.watchdog, None
        return watchdog

    def stand_down(self) -> None:
        """Let go of what was not used: the job never runs, the watchdog kills nothing."""
        if self.job is not None:
            self.job.abandon()
        if self.watchdog is not None:
            self.watchdog.abandon()
        reap()
