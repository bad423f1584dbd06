"""Is a recorded process still alive? psutil, failing closed.

Imported only off the hot path (conflicts, inspection): psutil costs ~40 ms to import.
A process we may not inspect is alive; a zombie is dead (without an init that reaps,
orphans stay zombies forever); a record from another host is never judged dead here.
"""

from __future__ import annotations

import psutil

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


def holder(record: Record) -> tuple[int, str]:
    """The PID to name as a key's holder, and a note when its singlerun is not it."""
    if record.host != host():
        return record.pid, f"; on {record.host}"
    if alive(record.pid, record.pid_started):
        return record.pid, ""
    if record.child_pid and alive(record.child_pid, record.child_started):
        return record.child_pid, f"; its singlerun, pid {record.pid}, is gone"
    if record.ttl is not None:  # a network lease: nobody released it, it runs out by itself
        return record.pid, "; that process is gone; its lease has not run out yet"
    return record.pid, "; that process is gone, but one it started still holds the lock"
