"""Finished runs: the row of one run, and the journal a run appends it to.

A run's row goes to `history.log`, one JSON line in one O_APPEND write under a shared
flock: no sqlite3 on the run path (importing it, opening the database and inserting cost
~6 ms, a tenth of a run). Once the journal is large, the run that finds it so folds it into
the sqlite3 ledger (ledger.py) under an exclusive flock; readers read both. The history is
a record, not a gate: a run whose row cannot be written still ran (the caller warns).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING

from singlerun.compactjson import dumps

if TYPE_CHECKING:
    from singlerun.lockdir import LockDir
    from singlerun.record import Record

JOURNAL = "history.log"  # key files all end in .lock/.rec/.queue/.stop: no clash
FOLD_AT = 64 * 1024  # journal bytes past which a run folds it into the ledger
KEEP = 10_000  # finished runs a history keeps unless --history-size says otherwise


@dataclass(frozen=True)
class Run:
    job_id: str
    group: str
    name: str
    host: str
    pid: int
    started_at: float
    ended_at: float | None  # None: lost, its end unknown
    exit_status: int | None  # None: lost
    outcome: str
    command: str  # JSON array
    attempt: int = 1  # --retry/--respawn: each attempt is a row
    run_id: str = ""  # the job ID of the run the attempt belongs to

    @classmethod
    def of(
        cls, record: Record, ended_at: float | None, exit_status: int | None, outcome: str
    ) -> Run:
        """The row of the run `record` names."""
        return cls(
            record.job_id,
            record.group,
            record.name,
            record.host,
            record.pid,
            record.started_at,
            ended_at,
            exit_status,
            outcome,
            dumps(record.command),
            record.attempt,
            record.run_id or record.job_id,
        )

    @classmethod
    def lost(cls, record: Record) -> Run:
        """The row of a run whose singlerun died: its end and status are unknown."""
        return cls.of(record, None, None, "lost")

    @property
    def argv(self) -> list[str]:
        import json

        argv = json.loads(self.command)
        return [str(a) for a in argv] if isinstance(argv, list) else []


def journal_line(run: Run) -> bytes:
    """A run as one line of JSON (the journal's, and the Redis stream's, format)."""
    return dumps(astuple(run)).encode() + b"\n"


def parse_journal(data: bytes) -> list[Run]:
    """The rows in a journal's bytes; a torn or foreign line is skipped, never fatal."""
    import json  # lazy: a run only appends

    runs = []
    for line in data.splitlines():
        try:
            values = json.loads(line)
            run = Run(*values)
        except (ValueError, TypeError, RecursionError):
            continue
        types_ok = isinstance(run.job_id, str) and isinstance(run.started_at, int | float)
        if types_ok and isinstance(run.command, str):
            runs.append(run)
    return runs


def lock_within(fd: int, operation: int, wait: float = 3.0) -> None:
    """flock(fd, operation) within `wait` seconds, else OSError: a fold holds the journal's
    exclusive lock for milliseconds, and whoever holds it longer (another member of a shared
    directory) must keep neither a finishing run nor `clean` waiting."""
    import time

    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                raise OSError(errno.EWOULDBLOCK, f"still locked after {wait:g} s") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def append(lock_dir: LockDir, runs: tuple[Run, ...], keep: int = KEEP) -> None:
    """Add rows to the journal (one write), folding it into the ledger once it is large."""
    data = b"".join(journal_line(run) for run in runs)
    try:
        fd = lock_dir.open(JOURNAL, os.O_WRONLY | os.O_APPEND, create=True)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a planted FIFO or device
                raise OSError(errno.EINVAL, "not a regular file")
            lock_within(fd, fcntl.LOCK_SH)  # a fold (LOCK_EX) reads and empties it
            if os.write(fd, data) != len(data):
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))  # a file size limit
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
    except OSError as exc:
        raise lock_dir.error("write the run history", JOURNAL, exc) from None
    if size >= FOLD_AT:
        from singlerun.ledger import Ledger  # lazy: sqlite3, once per many runs

        Ledger(lock_dir).fold(keep)
