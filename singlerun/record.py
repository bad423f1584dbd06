"""The owner record: who holds (or waits for) a key. Pure encode/parse, no I/O.

Format: a header line `singlerun-record <version>`, then one JSON object. `parse` never
raises: anything malformed, truncated or of another version is None, and unknown fields are
ignored so that newer writers stay readable.
"""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

from typing import Any, NamedTuple

from singlerun.compactjson import dumps

VERSION = 1
_HEADER = b"singlerun-record "
MAX_SIZE = 64 * 1024


class Record(NamedTuple):
    """Immutable, as a NamedTuple: every run builds this class at start-up, and a frozen
    dataclass of this size costs several times as much to create (README, start-up)."""

    job_id: str
    group: str
    name: str
    pid: int  # the singlerun supervisor
    host: str
    user: str
    started_at: float  # epoch seconds: when the job started, or a waiter began to wait
    command: list[str] = []  # noqa: RUF012  # never mutated: a record is replaced whole
    pid_started: float | None = None  # the supervisor's start time, to tell PID reuse
    child_pid: int | None = None  # the job; also its process group ID
    child_started: float | None = None
    token: str = ""  # the lease's token (fencing token on network stores)
    ttl: float | None = None  # lease TTL; None: held by a kernel lock, no expiry
    attempt: int = 1  # --retry/--respawn: which attempt runs (or ran last)
    next_attempt_at: float | None = None  # epoch seconds: between attempts, when the next starts
    run_id: str = ""  # the job ID of the run this attempt belongs to ('' : the same)
    invocation_id: str = ""  # under systemd: the unit's INVOCATION_ID (journalctl's key)
    # Not written: the uid owning the file the record was read from (file store only). In a
    # shared directory anyone in the group can write a record; only this uid's processes
    # may be signalled on its word.
    owner_uid: int | None = None

    def with_child(self, pid: int, started: float | None) -> "Record":
        return self._replace(child_pid=pid, child_started=started)


_TYPES: dict[str, tuple[type, ...]] = {
    "job_id": (str,),
    "group": (str,),
    "name": (str,),
    "pid": (int,),
    "pid_started": (int, float, type(None)),
    "host": (str,),
    "user": (str,),
    "started_at": (int, float),
    "command": (list,),
    "child_pid": (int, type(None)),
    "child_started": (int, float, type(None)),
    "token": (str,),
    "ttl": (int, float, type(None)),
    "attempt": (int,),
    "next_attempt_at": (int, float, type(None)),
    "run_id": (str,),
    "invocation_id": (str,),
}
_REQUIRED = set(Record._fields) - set(Record._field_defaults)
PID_MAX = 1 << 22  # Linux's PID_MAX_LIMIT: no process has a larger PID on any machine
_PIDS = ("pid", "child_pid")
_TIMES = ("pid_started", "started_at", "child_started", "ttl", "next_attempt_at")


def _sound(known: dict[str, Any]) -> bool:
    """Values a live run could have written: a PID that can exist (-1 or 0 would signal a
    whole process group or everyone), finite times, a positive attempt."""
    import math

    for name in _PIDS:
        pid = known.get(name)
        if pid is not None and not 0 < pid <= PID_MAX:
            return False
    for name in _TIMES:
        t = known.get(name)
        if t is not None and not (math.isfinite(t) and t >= 0):
            return False
    return bool(known.get("attempt", 1) >= 1)


def encode(record: Record) -> bytes:
    body = dumps({k: v for k, v in record._asdict().items() if k != "owner_uid"})
    return _HEADER + str(VERSION).encode() + b"\n" + body.encode() + b"\n"


def parse(data: bytes, owner_uid: int | None = None) -> Record | None:
    """The record in `data`, or None for anything singlerun did not write (a server's reply
    of another type included)."""
    import json  # lazy: a run only writes records

    if not isinstance(data, bytes):
        return None
    try:
        header, _, body = data.partition(b"\n")
        if not header.startswith(_HEADER) or int(header[len(_HEADER) :]) != VERSION:
            return None
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    known = {k: v for k, v in obj.items() if k in _TYPES}
    for name, value in known.items():
        if not isinstance(value, _TYPES[name]) or isinstance(value, bool):
            return None
    if not known.keys() >= _REQUIRED:
        return None
    if not all(isinstance(a, str) for a in known.get("command", [])) or not _sound(known):
        return None
    return Record(**known, owner_uid=owner_uid)
