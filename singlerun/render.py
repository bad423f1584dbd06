"""Records and runs for people: conflict messages, the `status` table, the `history` list.

The one module that words a record; `status.py` builds the data it renders.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from singlerun.durations import format_age

if TYPE_CHECKING:
    from singlerun.busy import LockBusy
    from singlerun.history import Run
    from singlerun.lease import Lease
    from singlerun.record import Record

Who = Callable[["Record"], tuple[int, str]]


def safe(text: object) -> str:
    """Text from records (which others may write) as the terminal should show it: control
    and format characters escaped, as `ls -b` does, so none can move the cursor, recolour
    the screen or reorder what is shown."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _plain(record: Record) -> tuple[int, str]:
    return record.pid, ""


def _elsewhere(record: Record) -> tuple[int, str]:
    return record.pid, f"; on {record.host}"


def describe(
    holders: list[Record], *, held: bool = False, now: float | None = None, who: Who = _plain
) -> str:
    """The parenthesis naming a key's holder in messages, or '' if none is recorded.

    `who` says which PID to name and what to add (liveness.holder checks the processes).
    """
    if not holders:
        return ""
    newest = max(holders, key=lambda r: r.started_at)
    age = format_age((time.time() if now is None else now) - newest.started_at)
    what = f"{len(holders)} instances, newest job" if len(holders) > 1 else "job"
    pid, note = who(newest)
    prefix = "held by " if held else ""
    return f" ({prefix}{what} {safe(newest.job_id)}, pid {pid}, started {age} ago{safe(note)})"


def busy(exc: LockBusy, timed_out: bool) -> str:
    """The conflict line: `backups/nightly is already running (job 01J…, pid 42, …)`."""
    from singlerun.busy import HeldBack
    from singlerun.identity import host, surely_running

    if isinstance(exc, HeldBack):
        import math

        return (
            f"{exc.key} is held back: {exc.why.what}; keys are granted again in "
            f"{format_age(math.ceil(exc.why.wait))}, when no job from before can still run"
        )
    # psutil costs ~40 ms to import: a stampede of launchers on a held key pays it on every
    # conflict. When the newest holder's singlerun is plainly running, /proc says so for less.
    newest = max(exc.holders, key=lambda r: r.started_at, default=None)
    who: Who = _plain
    if newest is not None and newest.host != host():
        who = _elsewhere
    elif newest is not None and not surely_running(newest.pid, newest.pid_started):
        from singlerun.liveness import holder  # lazy: psutil

        who = holder
    # No readable record: the key is being handed to a waiter queued before this run (the
    # store knows), or the holder has not written it yet, or it is corrupt (a pid of -1, a
    # torn file); either way the lock itself is held.
    unread = "" if exc.holders else " (its holder's record is missing or corrupt)"
    if not exc.holders and exc.handover:
        unread = " (a run queued with --wait before this one is taking it over)"
    if timed_out:
        return f"gave up waiting for {exc.key}{describe(exc.holders, held=True, who=who)}"
    return f"{exc.key} is already running{describe(exc.holders, who=who)}{unread}"


def _run_line(e: dict[str, Any]) -> str:
    if e["job_id"] is None:
        return "holder not recorded"
    age = format_age(e["elapsed_s"])
    attempt = ""
    if e.get("next_attempt_at"):
        attempt = (
            f" [attempt {e['attempt']} ended; key held, next attempt at {e['next_attempt_at']}]"
        )
    elif (e.get("attempt") or 1) > 1:
        attempt = f" [attempt {e['attempt']}]"
    if e.get("wrapper_gone"):
        attempt += " [its singlerun is gone; this process still holds the lock]"
    return (
        f"job {safe(e['job_id'])} pid {e['pid']} on {safe(e['host'])} as {safe(e['user'])}, "
        f"started {e['started_at']} ({age} ago){attempt}: {safe(shlex.join(e['command']))}"
    )


def json_array(items: list[Any]) -> str:
    """`--json`: an array with one object per line. Valid JSON for jq, a line per key for
    grep, and written by json's C encoder: `indent=` falls back to the pure-Python one
    (0.32 s against 0.08 s for 10,000 status entries, measured)."""
    import json

    return "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]" if items else "[]"


def status(entries: list[dict[str, Any]]) -> str:
    """`singlerun status` as text, from status.gather()'s entries."""
    lines = []
    for e in entries:
        # A run whose lease was lost runs on without it (--on-lease-lost continue).
        lost = ", lease lost" if e.get("lease_lost") else ""
        head = f"{safe(e['group'])}/{safe(e['name'])}  {e['state']}{lost}"
        if e["state"] in ("running", "stale"):
            head += "  " + _run_line(e)
        lines.append(head)
        for extra in e["holders"][1:]:
            lost = ", lease lost" if extra.get("lease_lost") else ""
            lines.append(f"  also running{lost}: {_run_line(extra)}")
        for w in e["waiters"]:
            lines.append(
                f"  waiting: pid {w['pid']} on {safe(w['host'])} for {format_age(w['waited_s'])} "
                f"(job {safe(w['job_id'])})"
            )
        if e["last"]:
            last = e["last"]
            took = "" if last["duration_s"] is None else f" after {format_age(last['duration_s'])}"
            code = "" if last["exit_status"] is None else f", exit {last['exit_status']}"
            by = f", stopped by {safe(last['stopped_by'])}" if last["stopped_by"] else ""
            lines.append(
                f"  last: {last['outcome']}{code}{by}, started {last['started_at']}"
                f"{took} (job {safe(last['job_id'])})"
            )
    return "".join(f"{line}\n" for line in lines)


def history(runs: list[Run]) -> str:
    """`singlerun history` as text, newest first."""
    from singlerun.status import last_run

    lines = []
    for run in runs:
        f = last_run(run)
        took = "?" if f["duration_s"] is None else format_age(f["duration_s"])
        code = "-" if run.exit_status is None else str(run.exit_status)
        attempt = f"  (attempt {run.attempt} of run {run.run_id})" if run.attempt > 1 else ""
        line = (
            f"{run.job_id}  {run.group}/{run.name}  {run.host}  pid {run.pid}  "
            f"{f['started_at']}  {took}  exit {code}  {run.outcome}{attempt}"
        )
        if run.stopped_by:
            line += f"  (stopped by {run.stopped_by})"
        lines.append(safe(line))
    return "".join(f"{line}\n" for line in lines)


def stale_record(record: Record | None) -> str:
    """A dead run's record, as `clean` and the stale-lock warning name it."""
    from singlerun.durations import rfc3339

    if record is None:
        return "an unreadable record"
    return f"job {safe(record.job_id)} (pid {record.pid}, started {rfc3339(record.started_at)})"


def reclaimed(lease: Lease) -> str:
    """What a run says of the dead run whose lock it took."""
    dead = lease.reclaimed.record if lease.reclaimed else None
    if dead is None:
        return (
            f"{lease.key}: reclaimed a stale lock whose record was unreadable "
            "(empty, truncated or corrupt)"
        )
    # A lease says only that it expired: its singlerun may be dead, or frozen (its watchdog
    # has killed the job), or cut off from the server.
    why = "is gone" if lease.ttl is None else "let its lease expire"
    return f"{lease.key}: reclaimed a stale lock: {stale_record(dead)} {why}"
