"""One run, top to bottom (`run` reads as its table of contents): take the key, publish the
record, supervise the job (again, with --retry/--respawn), let go of the key, then write
the history row and the metrics. A RunSession holds what the steps share."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from singlerun import ERROR, WARNING, say, signals, supervise
from singlerun.bookkeeping import Bookkeeping
from singlerun.errors import SpawnError, StoreError
from singlerun.exitcodes import ExitCode
from singlerun.identity import host, invocation_id, new_job_id, process_start_time, user
from singlerun.record import Record
from singlerun.taking import open_for, take

if TYPE_CHECKING:
    from singlerun.lease import Lease
    from singlerun.runconfig import RunConfig
    from singlerun.standby import Standby
    from singlerun.store.protocol import Store
    from singlerun.ticker import LeaseTicker


def run(cfg: RunConfig) -> int:
    signals.catch_interrupts()
    job_id, standby = new_job_id(), None
    if cfg.wait and cfg.backend is not None:  # a network waiter: see standby.py
        from singlerun.standby import Standby

        standby = Standby(cfg.command, cfg.job_env(job_id, 1))
    try:
        with open_for(cfg) as store:
            session = RunSession(cfg, store, job_id, standby)
            session.take_the_key()
            try:
                session.publish_the_record()
                session.keep_the_lease()
                session.first_attempt()
                session.more_attempts()  # --retry, --respawn
                assert session.done is not None  # the first attempt ran, or raised
                return session.done.code
            finally:
                session.let_go()
                session.write_history()
                session.write_metrics()
    finally:
        if standby is not None:
            standby.stand_down()


class Attempt:
    """The outcome of one attempt, as the loop and the history need it."""

    def __init__(
        self, record: Record, code: int, outcome: str, ended: supervise.Ended, by: str | None
    ) -> None:
        self.record, self.code, self.outcome, self.ended = record, code, outcome, ended
        self.stopped_by = by or ""  # USER@HOST of a `stop` or `--replace`; None: not stopped
        # Ended by someone: a signal to singlerun, `stop`, `--replace`, a lost lease.
        self.interrupted = by is not None or ended.forwarded or bool(ended.stopped)


def _outcome(ended: supervise.Ended, reason: str | None) -> str:
    if ended.timed_out:
        return "timeout"
    if reason == "replaced":
        return "replaced"
    if ended.signal is not None:
        return "killed"
    return "ok" if ended.code == 0 else "failed"


class RunSession:
    def __init__(self, cfg: RunConfig, store: Store, job_id: str, standby: Standby | None) -> None:
        self.cfg, self.store = cfg, store
        self.me = Record(
            job_id=job_id,
            group=cfg.key.group,
            name=cfg.key.name,
            pid=os.getpid(),
            pid_started=process_start_time(os.getpid()),
            host=host(),
            user=user(),
            started_at=time.time(),
            command=cfg.command,
            invocation_id=invocation_id(),
        )
        self.books = Bookkeeping(store, cfg.history_size)
        self.lease: Lease | None = None
        self.ticker: LeaseTicker | None = None
        self.done: Attempt | None = None  # the last attempt that ran
        self.spawn_failed: int | None = None  # 126/127: the first attempt could not start
        self.standby = standby  # a network waiter's job and watchdog, forked while it waits

    # -- the steps of run(), in order --------------------------------------------------------

    def take_the_key(self) -> None:
        if self.standby is not None:  # a network lease needs it: imported while waiting
            import singlerun.ticker  # noqa: F401
        ahead = self.standby.ahead() if self.standby else None
        self.lease = take(self.store, self.cfg, self.me, ahead)

    def publish_the_record(self) -> None:
        lease, cfg = self._lease, self.cfg
        signals.checkpoint()
        if lease.reclaimed and not cfg.quiet:
            from singlerun.render import reclaimed  # lazy: only a dead run's lock is

            say(reclaimed(lease), WARNING)
        if not cfg.quiet and (exposed := self.store.exposure()):
            say(f"warning: {cfg.key}: {exposed}", WARNING)
        self.me = self.me._replace(started_at=time.time(), token=lease.token, ttl=lease.ttl)
        if lease.named is not None:  # as the grant published it, naming the job forked ahead
            self.me = lease.named._replace(child_pid=None, child_started=None)
        if lease.ttl is None:  # a network lease's is published with the job's PID, before the
            self.store.publish(lease, self.me)  # job may run (guard): a request less, issue 21
        # A network lease that ran out meanwhile (singlerun paused since its grant) starts no
        # job: checked the instant before it would start (guard, LeaseTicker.in_time).
        if cfg.verbose:
            say(f"{cfg.key}: acquired in {self.store.location} as job {self.me.job_id}")

    def keep_the_lease(self) -> None:
        """A network lease is renewed while the job runs (ticker.py); a kernel lock is not."""
        if self._lease.ttl is None:
            return
        from singlerun.ticker import LeaseTicker

        cfg, keep_running = self.cfg, self.cfg.keep_running_without_lease
        self.ticker = LeaseTicker(
            self.store, self._lease, self.me.job_id,
            sig=cfg.signal, kill_after=cfg.kill_after, keep_running=keep_running,
        )  # fmt: skip

    def first_attempt(self) -> None:
        try:
            self.done = self._attempt(self.me)
        except SpawnError as exc:
            self.spawn_failed = exc.exit_code
            raise

    def more_attempts(self) -> None:
        """Attempts after the first, the key held throughout. Each attempt but the last gets
        its history row here; write_history() writes the last one's."""
        if self.cfg.retry is None or not self.cfg.retry.active:
            return
        from singlerun.attempts import Backoff

        backoff = Backoff(self.cfg.retry)
        notes: list[str] = []  # with -q, said only if the final attempt fails too
        last = self._done
        while True:
            ran_for = time.time() - last.record.started_at
            died_of = last.ended.signal
            pause = backoff.pause_before_next(last.code, died_of, last.interrupted, ran_for)
            if pause is None:
                break
            notes.append(self._between_attempts(last, pause))
            if supervise.pause(pause, self.ticker):
                break  # signalled or stopped while waiting: the last attempt's status stands
            me = self._next_attempt(last.record)
            if me is None:
                break
            last = self.done = self._attempt(me)
        if self.cfg.quiet and last.code != 0:
            for note in notes:
                say(note)

    def _between_attempts(self, last: Attempt, pause: float) -> str:
        """Say (or, with -q, keep) that another attempt comes; the record says when, and the
        attempt that ended gets its history row."""
        attempt = last.record.attempt
        note = (
            f"{self.cfg.key}: attempt {attempt} ended: {last.outcome}, status {last.code}; "
            f"attempt {attempt + 1} in {pause:.1f}s"
        )
        if not self.cfg.quiet:
            say(note)
        later = time.time() + pause
        waiting = last.record._replace(child_pid=None, child_started=None, next_attempt_at=later)
        self.books.publish(self._lease, waiting)
        self.books.history(last.record, self._lease, last.code, last.outcome, last.stopped_by)
        if self.ticker is not None:
            self.ticker.reap()  # the ended attempt's watchdog: a respawn loop keeps none
        return note

    def _next_attempt(self, last: Record) -> Record | None:
        """The next attempt's record, under a new job ID and a new grant of the kept lease;
        None if the lease was lost meanwhile (said)."""
        me = last._replace(
            job_id=new_job_id(), run_id=last.run_id or last.job_id, attempt=last.attempt + 1,
            started_at=time.time(), child_pid=None, child_started=None, next_attempt_at=None,
        )  # fmt: skip
        try:
            self.store.regrant(self._lease, me.job_id)
        except StoreError as exc:
            say(f"{self.cfg.key}: {exc.message}")
            return None
        me = me._replace(token=self._lease.token)
        self.books.publish(self._lease, me)
        if self.ticker is not None:
            self.ticker.job_id = me.job_id
        return me

    def let_go(self) -> None:
        if self.ticker is not None:
            self.ticker.disarm()
        try:
            self.store.release(self._lease)
        except (OSError, StoreError) as exc:
            if self.ticker is None or not self.ticker.lost:  # a lost lease was said once
                self.books.warn(f"releasing {self.cfg.key}: {getattr(exc, 'message', exc)}")
        if self.ticker is not None:
            self.ticker.reap()  # after the release: the next run does not wait for it

    def write_history(self) -> None:
        if (done := self.done) is not None:
            self.books.history(done.record, self._lease, done.code, done.outcome, done.stopped_by)
        elif self.spawn_failed is not None:
            self.books.history(self.me, self._lease, self.spawn_failed, "failed")

    def write_metrics(self) -> None:
        if self.cfg.textfile_dir is not None:
            self.books.textfile(self.cfg.textfile_dir)

    # -- one attempt ---------------------------------------------------------------------------

    def _attempt(self, me: Record) -> Attempt:
        """Run the job once, holding the lease; say how it ended (singlerun's code for it)."""
        cfg, store, lease, ticker = self.cfg, self.store, self._lease, self.ticker

        def name_the_job(pid: int) -> None:
            self.books.publish(lease, me.with_child(pid, process_start_time(pid)))

        def guard(pid: int) -> None:
            """A network lease: the watchdog is armed and the record names the job before
            the job may run, so a server that stops answering holds up no supervision."""
            assert ticker is not None
            ticker.guard(pid, self.standby.take_watchdog() if self.standby else None)
            if lease.named is None or lease.named.child_pid != pid:  # not named by the grant
                name_the_job(pid)
            ticker.in_time()  # last: the job starts at once, or never

        def started(pid: int) -> None:
            if ticker is None:
                name_the_job(pid)

        env = {**cfg.job_env(me.job_id, me.attempt), **store.job_env(lease)}
        keep = None if lease.job_fd is None or cfg.close else os.dup(lease.job_fd)
        runtime = cfg.max_runtime
        limit = None if runtime is None else supervise.Limit(runtime, cfg.signal, cfg.kill_after)
        ended = supervise.run(
            cfg.command,
            env,
            keep_fd=keep,
            on_started=started,
            guard=None if ticker is None else guard,
            ready=self.standby.take_job() if self.standby else None,
            limit=limit,
            ticker=ticker,
        )
        lost = False
        if ticker is not None:
            ticker.disarm()
            # A tick may have stopped the job, or the watchdog killed it before one could.
            lost = ticker.expired() and not cfg.keep_running_without_lease
        signals.job_ended_by(ended.signal)
        # With the lease lost, no stop request can be ours (and asking would only add a line
        # about the same dead connection). A network run's is the one its ticker acted on:
        # no request after the job, before the next waiter's turn (issue 21).
        request = None if lost else ticker.request if ticker else self.books.stop_request(lease)
        reason = None if request is None else request.reason
        outcome = "lost" if lost else _outcome(ended, reason)
        code = ExitCode.TIMEOUT if ended.timed_out else ended.code
        if cfg.verbose:
            say(f"{cfg.key}: job {me.job_id} ended: {outcome}, status {ended.code}")
        if lost:  # always said (docs/CONTRACT.md §8), and singlerun's failure: 125
            lost_it = f"the lease on {store.location} was lost; job {me.job_id} was stopped"
            say(f"{cfg.key}: {lost_it}", ERROR)
            code = ExitCode.INTERNAL
        elif ended.timed_out:  # even with -q (docs/CONTRACT.md §8): never silent
            say(f"{cfg.key}: job {me.job_id} exceeded --max-runtime and was stopped", WARNING)
        by = (request.by or "?") if request else "" if lost else None
        return Attempt(me, code, outcome, ended, by)

    @property
    def _lease(self) -> Lease:
        assert self.lease is not None, "the key is taken first"
        return self.lease

    @property
    def _done(self) -> Attempt:
        assert self.done is not None, "an attempt has run"
        return self.done
