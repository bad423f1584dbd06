"""`singlerun status`: every key's state, for humans (a table) and for programs (JSON)."""

from __future__ import annotations

import shlex
import time
from typing import Any

from singlerun.durations import format_age, rfc3339
from singlerun.history import Run
from singlerun.keys import JobKey
from singlerun.record import Record
from singlerun.store import KeyState


def _rfc3339(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)


def _run_fields(record: Record | None, now: float) -> dict[str, Any]:
    if record is None:
        return dict.fromkeys(
            ("job_id", "pid", "host", "user", "command", "started_at", "elapsed_s")
        )
    return {
        "job_id": record.job_id,
        "pid": record.pid,
        "host": record.host,
        "user": record.user,
        "command": record.command,
        "started_at": _rfc3339(record.started_at),
        "elapsed_s": round(now - record.started_at, 3),
    }


def last_run(run: Run | None) -> dict[str, Any] | None:
    """A finished run's fields, shared by `status` (`last`) and `history --json`."""
    if run is None:
        return None
    duration = None if run.ended_at is None else round(run.ended_at - run.started_at, 3)
    return {
        "job_id": run.job_id,
        "outcome": run.outcome,
        "exit_status": run.exit_status,
        "started_at": _rfc3339(run.started_at),
        "ended_at": _rfc3339(run.ended_at),
        "duration_s": duration,
    }


def entry(key: JobKey, state: KeyState | None, last: Run | None, now: float) -> dict[str, Any]:
    """One key's status with the field names of SPEC §5 (plus `holders`)."""
    holders = sorted(state.holders, key=lambda r: r.started_at) if state else []
    if state and (holders or state.unrecorded):
        name, shown = "running", holders[0] if holders else None
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
        **_run_fields(shown, now),
        "holders": [_run_fields(r, now) for r in holders],
        "waiters": [
            {
                "pid": w.pid,
                "job_id": w.job_id,
                "since": _rfc3339(w.started_at),
                "waited_s": round(now - w.started_at, 3),
            }
            for w in (state.waiters if state else [])
        ],
        "last": last_run(last),
    }


def gather(
    states: list[KeyState],
    last_runs: dict[tuple[str, str], Run],
    group: str | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    now = time.time()
    by_key: dict[JobKey, KeyState | None] = {s.key: s for s in states if s.key is not None}
    for group_name in last_runs:
        by_key.setdefault(JobKey(*group_name), None)
    entries = [
        entry(k, s, last_runs.get((k.group, k.name)), now)
        for k, s in by_key.items()
        if (group is None or k.group == group) and (name is None or k.name == name)
    ]
    if name is not None and not entries:  # an unknown key is simply idle
        entries.append(entry(JobKey(group or "default", name), None, None, now))
    return sorted(entries, key=lambda e: (e["group"], e["name"]))


def _describe_run(e: dict[str, Any]) -> str:
    if e["job_id"] is None:
        return "holder not recorded"
    age = format_age(e["elapsed_s"])
    return (
        f"job {e['job_id']} pid {e['pid']} on {e['host']} as {e['user']}, started "
        f"{e['started_at']} ({age} ago): {shlex.join(e['command'])}"
    )


def render(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        head = f"{e['group']}/{e['name']}  {e['state']}"
        if e["state"] in ("running", "stale"):
            head += "  " + _describe_run(e)
        lines.append(head)
        for extra in e["holders"][1:]:
            lines.append(f"  also running: {_describe_run(extra)}")
        for w in e["waiters"]:
            lines.append(
                f"  waiting: pid {w['pid']} for {format_age(w['waited_s'])} (job {w['job_id']})"
            )
        if e["last"]:
            last = e["last"]
            took = "" if last["duration_s"] is None else f" after {format_age(last['duration_s'])}"
            status = "" if last["exit_status"] is None else f", exit {last['exit_status']}"
            lines.append(
                f"  last: {last['outcome']}{status}, started {last['started_at']}"
                f"{took} (job {last['job_id']})"
            )
    return "\n".join(lines) + ("\n" if lines else "")


def render_history(runs: list[Run]) -> str:
    lines = []
    for run in runs:
        f = last_run(run)
        assert f is not None
        took = "?" if f["duration_s"] is None else format_age(f["duration_s"])
        status = "-" if run.exit_status is None else str(run.exit_status)
        lines.append(
            f"{run.job_id}  {run.group}/{run.name}  {run.host}  pid {run.pid}  "
            f"{f['started_at']}  {took}  exit {status}  {run.outcome}"
        )
    return "\n".join(lines) + ("\n" if lines else "")
