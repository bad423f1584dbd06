"""One run, top to bottom: acquire (or conflict / wait), record, supervise, release."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, replace

from singlerun import lockdir, supervise
from singlerun.errors import Interrupted, LockBusy, StoreError
from singlerun.identity import host, new_job_id, process_start_time, user
from singlerun.keys import JobKey
from singlerun.record import Record
from singlerun.store import Lease
from singlerun.store.files import FileStore


@dataclass(frozen=True)
class RunConfig:
    command: list[str]
    key: JobKey
    lock_dir: str
    wait: bool = False
    wait_timeout: float | None = None
    conflict_exit_code: int = 75
    close: bool = False
    quiet: bool = False
    verbose: bool = False


def warn(message: str) -> None:
    print(f"singlerun: {message}", file=sys.stderr, flush=True)


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _catch_interrupts() -> None:
    """Until the job starts, a terminating signal ends singlerun cleanly (leaving the queue,
    releasing what it holds); signals that were ignored at start stay ignored."""
    for sig in supervise.FORWARDED:
        if sig != signal.SIGWINCH and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


def _report_reclaimed(lease: Lease) -> None:
    dead = lease.reclaimed.record if lease.reclaimed else None
    if dead is None:
        warn(
            f"{lease.key}: reclaimed a stale lock whose record was unreadable "
            "(empty, truncated or corrupt)"
        )
    else:
        warn(
            f"{lease.key}: reclaimed a stale lock: job {dead.job_id} "
            f"(pid {dead.pid}, started {rfc3339(dead.started_at)}) is gone"
        )


def run(cfg: RunConfig) -> int:
    _catch_interrupts()
    store = FileStore(lockdir.prepare(cfg.lock_dir))
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
    deadline = None if cfg.wait_timeout is None else time.monotonic() + cfg.wait_timeout
    try:
        lease = store.acquire(cfg.key, me, slots=1, wait=cfg.wait, deadline=deadline)
    except LockBusy as exc:
        exc.exit_code = cfg.conflict_exit_code
        if cfg.quiet:
            exc.message = ""
        raise
    try:
        if lease.reclaimed and not cfg.quiet:
            _report_reclaimed(lease)
        me = replace(me, started_at=time.time(), token=lease.token, ttl=lease.ttl)
        store.publish(lease, me)
        if cfg.verbose:
            warn(f"{cfg.key}: acquired in {store.lock_dir} as job {me.job_id}")

        def started(pid: int) -> None:
            try:
                store.publish(lease, me.with_child(pid, process_start_time(pid)))
            except StoreError as exc:
                warn(f"warning: {exc.message}")

        env = {
            **os.environ,
            "SINGLERUN_JOB_ID": me.job_id,
            "SINGLERUN_JOB_NAME": cfg.key.name,
            "SINGLERUN_JOB_GROUP": cfg.key.group,
        }
        share = lease.job_fd is not None and not cfg.close
        keep = os.dup(lease.job_fd) if share else None
        code = supervise.run(cfg.command, env, keep_fd=keep, on_started=started)
        if cfg.verbose:
            warn(f"{cfg.key}: job {me.job_id} exited with status {code}")
        return code
    finally:
        try:
            store.release(lease)
        except (OSError, StoreError) as exc:
            warn(f"warning: releasing {cfg.key}: {exc}")
