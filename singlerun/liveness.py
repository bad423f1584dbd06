"""Is a recorded process still alive? psutil, failing closed.

Imported only off the hot path (conflicts, inspection): psutil costs ~40 ms to import.
A process we may not inspect is alive; a zombie is dead (without an init that reaps,
orphans stay zombies forever); a record from another host is never judged dead here.
"""

from __future__ import annotations

import time

import psutil

from singlerun.durations import format_age
from singlerun.identity import host
from singlerun.record import Record

# Recorded start times are computed from /proc as psutil does, but the boot time both read
# moves when the wall clock is stepped; a PID reused within a second is not a concern.
_START_TOLERANCE = 1.0


def alive(pid: int | None, started: float | None) -> bool:
    """Whether `pid` is a live process that started at `started` (if given)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) <= _START_TOLERANCE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def record_alive(record: Record) -> bool:
    """Whether the run a record names still has a live supervisor or job."""
    if record.host != host():
        return True
    return alive(record.pid, record.pid_started) or alive(record.child_pid, record.child_started)


def describe(holders: list[Record], *, held: bool = False, now: float | None = None) -> str:
    """The parenthesis that names a key's holder in messages, or '' if none is recorded."""
    if not holders:
        return ""
    newest = max(holders, key=lambda r: r.started_at)
    age = format_age((time.time() if now is None else now) - newest.started_at)
    what = f"{len(holders)} instances, newest job" if len(holders) > 1 else "job"
    pid, note = newest.pid, ""
    if newest.host != host():
        note = f"; on {newest.host}"
    elif not alive(newest.pid, newest.pid_started):
        if alive(newest.child_pid, newest.child_started):
            pid, note = newest.child_pid, f"; its singlerun, pid {newest.pid}, is gone"
        else:
            note = "; that process is gone, but one it started still holds the lock"
    prefix = "held by " if held else ""
    return f" ({prefix}{what} {newest.job_id}, pid {pid}, started {age} ago{note})"
