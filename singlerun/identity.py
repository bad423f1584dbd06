"""Who this run is: its job ID, host, user and process start time."""

from __future__ import annotations

import os
import pwd
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id() -> str:
    """A ULID: 26 URL-safe characters, sortable by start time (48-bit ms clock, 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def host() -> str:
    return os.uname().nodename


def user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # containers often run uids with no passwd entry
        return str(os.getuid())


def _proc_stat(pid: int) -> tuple[bytes, float] | None:
    """(state, start time) of `pid` from /proc, start time as psutil's create_time()."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[0], int(fields[19]) / os.sysconf("SC_CLK_TCK") + btime


def process_start_time(pid: int) -> float | None:
    """Start time of `pid` as psutil's Process.create_time() computes it on Linux.

    Deliberately not psutil: importing it costs ~40 ms on every run, and this is two reads
    of /proc. tests/unit/test_identity.py checks that both agree.
    """
    found = _proc_stat(pid)
    return None if found is None else found[1]


def surely_running(pid: int, started: float | None) -> bool:
    """True if `pid` is a live, non-zombie process that started at `started`.

    A cheap first check for the conflict message (no psutil import); False means "ask
    liveness.py", not "dead".
    """
    found = _proc_stat(pid)
    return found is not None and found[0] != b"Z" and started is not None and found[1] == started


def invocation_id() -> str:
    """The systemd unit's invocation ID (32 hex digits) if run by systemd, else ''."""
    value = os.environ.get("INVOCATION_ID", "")
    ok = len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    return value if ok else ""
