"""Taking the key: a free slot, else the conflict (exit 75 or --conflict-exit-code), the
queue (--wait, --wait-timeout) or, with --replace, stopping the oldest holder first."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from singlerun import say, signals
from singlerun.busy import LockBusy, WaitTimeout
from singlerun.errors import NotPermitted

if TYPE_CHECKING:
    from singlerun.lease import Lease
    from singlerun.record import Record
    from singlerun.runconfig import RunConfig
    from singlerun.store.protocol import Store


def _conflict(cfg: RunConfig, busy: LockBusy, why: str = "") -> LockBusy:
    """The conflict as the user sees it: the code they chose, one line (none with -q)."""
    from singlerun import render  # lazy: only conflicts are worded

    busy.exit_code = cfg.conflict_exit_code
    busy.message = "" if cfg.quiet else render.busy(busy, isinstance(busy, WaitTimeout)) + why
    return busy


def open_for(cfg: RunConfig) -> Store:
    """The run's store. A waiter waits for a server that has no connection free for it yet
    (PostgreSQL's max_connections: errors.Dropped) as it waits for the key: until
    --wait-timeout (a conflict), or for ever; a run without --wait does not (issue 21)."""
    from singlerun.errors import Dropped
    from singlerun.store import open_store

    outage = None
    while True:
        try:
            return open_store(cfg.lock_dir, cfg.backend, cfg.lease_ttl)
        except Dropped as exc:
            if not cfg.wait:
                raise
            if outage is None:
                from singlerun.store.outage import Outage

                outage = Outage(exc.where, cfg.key, cfg.deadline, bound=None)
            try:
                outage.wait_out(exc.message.split(": ", 1)[-1])
            except LockBusy as busy:
                raise _conflict(cfg, busy) from None


def take(store: Store, cfg: RunConfig, me: Record, job: tuple[int, float | None] | None) -> Lease:
    """The key, taken. `job`: the job's process, forked ahead (Store.acquire)."""
    deadline = cfg.deadline
    replaced: set[str] = set()
    while True:
        try:
            return store.acquire(
                cfg.key,
                me,
                slots=cfg.max_concurrent,
                wait=cfg.wait and not cfg.replace,
                deadline=deadline,
                job=job,
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
