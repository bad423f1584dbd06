"""`singlerun status`: every key's state as data (the JSON of docs/CONTRACT.md §5);
render.py words it."""

from __future__ import annotations

import time
from typing import Any

from singlerun.durations import rfc3339
from singlerun.history import Run
from singlerun.keys import JobKey, KeyFilter
from singlerun.record import Record
from singlerun.store.protocol import KeyState


def _rfc3339(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)


_RUN_FIELDS = (
    *("job_id", "pid", "wrapper_gone", "host", "user", "command", "started_at", "elapsed_s"),
    *("attempt", "next_attempt_at", "invocation_id", "lease_lost"),
)


def _holding_pid(record: Record) -> tuple[int, bool]:
    """The PID that holds the key, and whether its singlerun is gone: after `kill -9` of
    singlerun, its job (which shares the lock) holds on, and that is the PID to show."""
    from singlerun.identity import host

    if record.host != host() or not record.child_pid:
        return record.pid, False
    from singlerun.liveness import alive  # lazy: psutil, for this case only

    if alive(record.pid, record.pid_started):
        return record.pid, False
    return (
        (record.child_pid, True)
        if alive(record.child_pid, record.child_started)
        else (
            record.pid,
            False,
        )
    )


def _run_fields(record: Record | None, now: float, adrift: bool = False) -> dict[str, Any]:
    """A run's fields; `adrift`: its lease was lost and its job runs on without it."""
    if record is None:
        return dict.fromkeys(_RUN_FIELDS)
    pid, wrapper_gone = _holding_pid(record)
    return {
        "job_id": record.job_id,
        "pid": pid,
        "wrapper_gone": wrapper_gone,
        "host": record.host,
        "user": record.user,
        "command": record.command,
        "started_at": _rfc3339(record.started_at),
        "elapsed_s": round(now - record.started_at, 3),
        "attempt": record.attempt,
        "next_attempt_at": _rfc3339(record.next_attempt_at),
        "invocation_id": record.invocation_id or None,  # journalctl _SYSTEMD_INVOCATION_ID=
        "lease_lost": adrift,
    }


def last_run(run: Run) -> dict[str, Any]:
    """A finished run's fields, shared by `status` (`last`) and `history --json`."""
    duration = None if run.ended_at is None else round(run.ended_at - run.started_at, 3)
    return {
        "job_id": run.job_id,
        "outcome": run.outcome,
        "exit_status": run.exit_status,
        "started_at": _rfc3339(run.started_at),
        "ended_at": _rfc3339(run.ended_at),
        "duration_s": duration,
        "stopped_by": run.stopped_by or None,  # USER@HOST of `stop` or `--replace`
    }


def history_row(run: Run) -> dict[str, Any]:
    """One run in `history --json` (docs/CONTRACT.md §5)."""
    return {
        "group": run.group,
        "name": run.name,
        "host": run.host,
        "pid": run.pid,
        "command": run.argv,
        **last_run(run),
        "attempt": run.attempt,
        "run_id": run.run_id or run.job_id,
        "invocation_id": run.invocation_id or None,
    }


def _started(record: Record) -> float:
    return record.started_at


def entry(key: JobKey, state: KeyState | None, last: Run | None, now: float) -> dict[str, Any]:
    """One key's status with the field names of docs/CONTRACT.md §5 (plus `holders`)."""
    # Runs that hold a slot, then runs adrift (--on-lease-lost continue); a slot's record
    # may still name a run adrift (its lease was taken by a run yet to write its own).
    runs: list[tuple[Record, bool]] = []
    if state:
        gone = {r.job_id for r in state.adrift}
        held = [r for r in state.holders if r.job_id not in gone]
        runs = [(r, False) for r in sorted(held, key=_started)]
        runs += [(r, True) for r in sorted(state.adrift, key=_started)]
    shown, lost = runs[0] if runs else (None, False)
    if state and (runs or state.unrecorded):
        name = "running"
    elif state and state.waiters:
        name, shown = "waiting", None
    elif state and state.stale:
        name, shown = "stale", next((r for r in state.stale if r), None)
    else:
        name, shown = "idle", None
    return {
        "group": key.group,
        "name": key.name,
        "state": name,
        **_run_fields(shown, now, lost and name == "running"),
        "holders": [_run_fields(r, now, adrift) for r, adrift in runs],
        "waiters": [
            {
                "pid": w.pid,
                "host": w.host,
                "user": w.user,
                "job_id": w.job_id,
                "since": _rfc3339(w.started_at),
                "waited_s": round(now - w.started_at, 3),
            }
            for w in (state.waiters if state else [])
        ],
        "last": None if last is None else last_run(last),
    }


RECENT = 7 * 86400.0  # `status` shows idle keys that ran within this (`--all`: every key)


def last_active(run: Run | None) -> float | None:
    """When a key was last in use, as its history tells (None: no run is known)."""
    return None if run is None else max(run.started_at, run.ended_at or 0.0)


def gather(
    states: list[KeyState],
    last_runs: dict[tuple[str, str], Run],
    only: KeyFilter,
    *,
    recent: float | None = None,
) -> list[dict[str, Any]]:
    """Every key's entry; with `recent`, idle keys only if they ran within that many
    seconds (a key asked for by name is always shown)."""
    now = time.time()
    by_key: dict[JobKey, KeyState | None] = {s.key: s for s in states if s.key is not None}
    for group_name in last_runs:
        by_key.setdefault(JobKey(*group_name), None)
    entries = [
        entry(k, s, last_runs.get((k.group, k.name)), now)
        for k, s in by_key.items()
        if only.matches(k)
    ]
    if recent is not None and only.key is None:
        since = now - recent
        entries = [
            e
            for e in entries
            if e["state"] != "idle"
            or (last_active(last_runs.get((e["group"], e["name"]))) or 0.0) >= since
        ]
    if only.key is not None and not entries:  # an unknown key is simply idle
        entries.append(entry(only.key, None, None, now))
    return sorted(entries, key=lambda e: (e["group"], e["name"]))
