"""One run, top to bottom: acquire (or conflict / wait / replace), record, supervise,
release, then the ledger row."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from singlerun import say, signals, supervise
from singlerun.errors import (
    LockBusy,
    NotPermitted,
    SpawnError,
    StoreError,
    WaitTimeout,
)
from singlerun.exitcodes import ExitCode
from singlerun.identity import host, new_job_id, process_start_time, user
from singlerun.keys import JobKey
from singlerun.record import Record
from singlerun.store import Lease, open_store

if TYPE_CHECKING:
    from singlerun.attempts import Policy
    from singlerun.lease import LeaseTicker
    from singlerun.store.protocol import Store


@dataclass(frozen=True, eq=False)  # never compared: no __eq__ to build at each start-up
class RunConfig:
    command: list[str]
    key: JobKey
    lock_dir: str | None = None
    backend: str | None = None
    lease_ttl: float = 30.0
    keep_running_without_lease: bool = False  # --on-lease-lost continue
    scrubbed: frozenset[str] = frozenset()  # option variables the job does not inherit
    retry: Policy | None = None  # --retry / --respawn
    wait: bool = False
    wait_timeout: float | None = None
    conflict_exit_code: int = ExitCode.CONFLICT
    close: bool = False
    quiet: bool = False
    verbose: bool = False
    replace: bool = False
    max_concurrent: int = 1
    max_runtime: float | None = None
    signal: int = signal.SIGTERM
    kill_after: float = 10.0
    history_size: int | None = None  # --history-size (None: history.KEEP)
    textfile_dir: str | None = None  # --textfile-dir: node_exporter's textfile collector


def _report_reclaimed(lease: Lease) -> None:
    dead = lease.reclaimed.record if lease.reclaimed else None
    if dead is None:
        say(
            f"{lease.key}: reclaimed a stale lock whose record was unreadable "
            "(empty, truncated or corrupt)"
        )
    else:
        from singlerun.render import stale_record

        # A lease says only that it expired: its singlerun may be dead, or frozen (its
        # watchdog has killed the job), or cut off from the server.
        why = "is gone" if lease.ttl is None else "let its lease expire"
        say(f"{lease.key}: reclaimed a stale lock: {stale_record(dead)} {why}")


def _conflict(cfg: RunConfig, busy: LockBusy, why: str = "") -> LockBusy:
    """The conflict as the user sees it: the code they chose, one line (none with -q)."""
    from singlerun import render  # lazy: only conflicts are worded

    busy.exit_code = cfg.conflict_exit_code
    busy.message = "" if cfg.quiet else render.busy(busy, isinstance(busy, WaitTimeout)) + why
    return busy


def _acquire(store: Store, cfg: RunConfig, me: Record) -> Lease:
    deadline = None if cfg.wait_timeout is None else time.monotonic() + cfg.wait_timeout
    replaced: set[str] = set()
    while True:
        try:
            return store.acquire(
                cfg.key,
                me,
                slots=cfg.max_concurrent,
                wait=cfg.wait and not cfg.replace,
                deadline=deadline,
            )
        except LockBusy as busy:
            signals.checkpoint()  # a signal that arrived meanwhile wins over the conflict
            oldest = min(busy.holders, key=lambda r: r.started_at, default=None)
            # Stopped once and still holding: a process the record does not name (one its
            # job left behind) has the lock, and stopping the run again would not free it.
            if not cfg.replace or oldest is None or oldest.job_id in replaced:
                raise _conflict(cfg, busy) from None
            conflict = busy
        # --replace: stop the oldest instance, then race for its slot again.
        from singlerun.stopping import Unverifiable, stop_run  # lazy: psutil, --replace only

        replaced.add(oldest.job_id)
        if cfg.verbose:
            say(f"{cfg.key}: replacing job {oldest.job_id} (pid {oldest.pid})")
        timeout = cfg.kill_after + 10 if deadline is None else deadline - time.monotonic()
        try:
            stop_run(
                store,
                oldest,
                sig=cfg.signal,
                kill_after=cfg.kill_after,
                timeout=max(0.0, timeout),
                reason="replaced",
            )
        except (NotPermitted, Unverifiable) as exc:  # a conflict, with the reason
            raise _conflict(cfg, conflict, f"; cannot replace it: {exc.message}") from None


def _outcome(ended: supervise.Ended, reason: str | None) -> str:
    if ended.timed_out:
        return "timeout"
    if reason == "replaced":
        return "replaced"
    if ended.signal is not None:
        return "killed"
    return "ok" if ended.code == 0 else "failed"


class _Bookkeeping:
    """The record rewrite, the release and the ledger never fail a run; their trouble is
    reported once per run (one cause, such as a lock directory deleted under the job,
    would otherwise show up in each of them)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.warned = False

    def warn(self, message: str) -> None:
        if self.warned:
            return
        self.warned = True
        if self.location.startswith("/") and not os.path.isdir(self.location):
            message = f"the lock directory {self.location} disappeared while the job ran"
        say(f"warning: {message}; the run itself is unaffected")


def _write_history(
    store: Store,
    me: Record,
    lease: Lease,
    code: int,
    outcome: str,
    books: _Bookkeeping,
    keep: int | None,
) -> None:
    """The ledger never fails a run: any error (sqlite3's, the file system's, or even loading
    sqlite3 under a memory limit) is one warning, and the job's status stands."""
    dead = lease.reclaimed.record if lease.reclaimed else None
    try:
        from singlerun.history import Run  # lazy: after the lock is released

        rows = [Run.of(me, time.time(), code, outcome)]
        if dead is not None:
            rows.append(Run.lost(dead))
            lease.reclaimed = None  # its row is written once, with the first attempt's
        store.add_runs(*rows, keep=keep)
    except StoreError as exc:
        books.warn(exc.message)
    except Exception as exc:
        books.warn(f"cannot write the run history ({exc})")


def _check_lease(lease: Lease, location: str) -> None:
    """A lease that may have expired already (singlerun was paused while acquiring) must
    not start a job: another host may hold it."""
    if lease.ttl is None:
        return
    from singlerun.lease import margin

    if time.monotonic() >= lease.granted + lease.ttl - margin(lease.ttl):
        raise StoreError(f"{lease.key}: the lease on {location} ran out before the job started")


class _Attempt:
    """The outcome of one attempt, as the loop and the ledger need it."""

    def __init__(
        self, record: Record, code: int, outcome: str, ended: supervise.Ended, stopped: bool
    ) -> None:
        self.record, self.code, self.outcome, self.ended = record, code, outcome, ended
        # Ended by someone: a signal to singlerun, `stop`, `--replace`, a lost lease.
        self.interrupted = stopped or ended.forwarded or bool(ended.stopped)


def _attempt(
    cfg: RunConfig,
    store: Store,
    lease: Lease,
    me: Record,
    ticker: LeaseTicker | None,
    books: _Bookkeeping,
) -> _Attempt:
    """Run the job once, holding the lease; say how it ended (singlerun's code for it)."""

    def name_the_job(pid: int) -> None:
        try:
            store.publish(lease, me.with_child(pid, process_start_time(pid)))
        except StoreError as exc:
            books.warn(exc.message)

    def guard(pid: int) -> None:
        """A network lease: the watchdog is armed and the record names the job before the
        job may run, so a server that stops answering holds up no supervision."""
        assert ticker is not None
        ticker.guard(pid)
        name_the_job(pid)

    def started(pid: int) -> None:
        if ticker is None:
            name_the_job(pid)

    env = {
        **{k: v for k, v in os.environ.items() if k not in cfg.scrubbed},
        "SINGLERUN_JOB_ID": me.job_id,
        "SINGLERUN_JOB_NAME": cfg.key.name,
        "SINGLERUN_JOB_GROUP": cfg.key.group,
        **({"SINGLERUN_ATTEMPT": str(me.attempt)} if cfg.retry else {}),
        **store.job_env(lease),
    }
    keep = None if lease.job_fd is None or cfg.close else os.dup(lease.job_fd)
    limit = None
    if cfg.max_runtime is not None:
        limit = supervise.Limit(cfg.max_runtime, cfg.signal, cfg.kill_after)
    ended = supervise.run(
        cfg.command,
        env,
        keep_fd=keep,
        on_started=started,
        guard=None if ticker is None else guard,
        limit=limit,
        ticker=ticker,
    )
    lost = False
    if ticker is not None:
        ticker.disarm()
        # A tick may have stopped the job, or the watchdog killed it before one could.
        lost = ticker.expired() and not cfg.keep_running_without_lease
    signals.job_ended_by(ended.signal)
    reason = _stop_reason(store, lease, books)
    outcome = "lost" if lost else _outcome(ended, reason)
    code = ExitCode.TIMEOUT if ended.timed_out else ended.code
    if cfg.verbose:
        say(f"{cfg.key}: job {me.job_id} ended: {outcome}, status {ended.code}")
    if lost:  # always said (SPEC §8), and singlerun's failure: 125
        say(f"{cfg.key}: the lease on {store.location} was lost; job {me.job_id} was stopped")
        code = ExitCode.INTERNAL
    elif ended.timed_out:  # even with -q (SPEC §8): a stopped job is never silent
        say(f"{cfg.key}: job {me.job_id} exceeded --max-runtime and was stopped")
    return _Attempt(me, code, outcome, ended, stopped=reason is not None or lost)


def run(cfg: RunConfig) -> int:
    signals.catch_interrupts()
    store = open_store(cfg.lock_dir, cfg.backend, cfg.lease_ttl)
    me = Record(
        job_id=new_job_id(),
        group=cfg.key.group,
        name=cfg.key.name,
        pid=os.getpid(),
        pid_started=process_start_time(os.getpid()),
        host=host(),
        user=user(),
        started_at=time.time(),
        command=cfg.command,
    )
    lease = _acquire(store, cfg, me)
    books = _Bookkeeping(store.location)
    done: _Attempt | None = None
    spawn_failed: int | None = None
    ticker = None
    try:
        signals.checkpoint()
        if lease.reclaimed and not cfg.quiet:
            _report_reclaimed(lease)
        me = replace(me, started_at=time.time(), token=lease.token, ttl=lease.ttl)
        store.publish(lease, me)
        _check_lease(lease, store.location)
        if cfg.verbose:
            say(f"{cfg.key}: acquired in {store.location} as job {me.job_id}")
        if lease.ttl is not None:
            from singlerun.lease import LeaseTicker

            ticker = LeaseTicker(
                store,
                lease,
                me.job_id,
                sig=cfg.signal,
                kill_after=cfg.kill_after,
                keep_running=cfg.keep_running_without_lease,
            )
        try:
            done = _attempt(cfg, store, lease, me, ticker, books)
        except SpawnError as exc:
            spawn_failed = exc.exit_code
            raise
        if cfg.retry is not None and cfg.retry.active:
            done = _more_attempts(cfg, store, lease, done, ticker, books)
        return done.code
    finally:
        if ticker is not None:
            ticker.disarm()
        try:
            store.release(lease)
        except (OSError, StoreError) as exc:
            if ticker is None or not ticker.lost:  # a lost lease was said once already
                books.warn(f"releasing {cfg.key}: {getattr(exc, 'message', exc)}")
        if done is not None:
            _write_history(
                store, done.record, lease, done.code, done.outcome, books, cfg.history_size
            )
        elif spawn_failed is not None:
            _write_history(store, me, lease, spawn_failed, "failed", books, cfg.history_size)
        if cfg.textfile_dir is not None:
            _write_textfile(store, cfg.textfile_dir, books)
        store.close()


def _write_textfile(store: Store, directory: str, books: _Bookkeeping) -> None:
    """--textfile-dir: the metrics after this run's row; trouble is one warning."""
    from singlerun import metrics
    from singlerun.keys import KeyFilter

    try:
        metrics.write_textfile(directory, metrics.of_store(store, KeyFilter()))
    except StoreError as exc:
        books.warn(f"cannot write the metrics: {exc.message}")
    except OSError as exc:
        books.warn(f"cannot write the metrics to {directory}: {exc.strerror or exc}")


def _more_attempts(
    cfg: RunConfig,
    store: Store,
    lease: Lease,
    last: _Attempt,
    ticker: LeaseTicker | None,
    books: _Bookkeeping,
) -> _Attempt:
    """--retry / --respawn: attempts after the first, the key held throughout. Each attempt
    but the last gets its history row here; the caller writes the last one's."""
    from singlerun.attempts import Backoff

    assert cfg.retry is not None
    backoff = Backoff(cfg.retry)
    notes: list[str] = []  # with -q, said only if the final attempt fails too
    while True:
        ran_for = time.time() - last.record.started_at
        died_of = last.ended.signal
        pause = backoff.pause_before_next(last.code, died_of, last.interrupted, ran_for)
        if pause is None:
            break
        note = (
            f"{cfg.key}: attempt {last.record.attempt} ended: {last.outcome}, status "
            f"{last.code}; attempt {last.record.attempt + 1} in {pause:.1f}s"
        )
        if cfg.quiet:
            notes.append(note)
        else:
            say(note)
        waiting = replace(
            last.record, child_pid=None, child_started=None, next_attempt_at=time.time() + pause
        )
        _publish_quietly(store, lease, waiting, books)
        _write_history(store, last.record, lease, last.code, last.outcome, books, cfg.history_size)
        if supervise.pause(pause, ticker):
            break  # signalled or stopped while waiting: the last attempt's status stands
        me = replace(
            last.record,
            job_id=new_job_id(),
            run_id=last.record.run_id or last.record.job_id,
            attempt=last.record.attempt + 1,
            started_at=time.time(),
            child_pid=None,
            child_started=None,
            next_attempt_at=None,
        )
        try:
            store.regrant(lease, me.job_id)
        except StoreError as exc:
            say(f"{cfg.key}: {exc.message}")
            break
        me = replace(me, token=lease.token)
        _publish_quietly(store, lease, me, books)
        if ticker is not None:
            ticker.job_id = me.job_id
        last = _attempt(cfg, store, lease, me, ticker, books)
    if notes and last.code != 0:
        for note in notes:
            say(note)
    return last


def _publish_quietly(store: Store, lease: Lease, record: Record, books: _Bookkeeping) -> None:
    try:
        store.publish(lease, record)
    except StoreError as exc:
        books.warn(exc.message)


def _stop_reason(store: Store, lease: Lease, books: _Bookkeeping) -> str | None:
    """Why a stopper ended the run, if one did; trouble reading it never costs the status."""
    try:
        return store.stop_reason(lease)
    except (OSError, StoreError) as exc:
        books.warn(getattr(exc, "message", str(exc)))
        return None
