"""The run ledger: one sqlite3 row per finished run, in the lock directory.

WAL and a busy timeout let many runs finishing at once all get their row. The ledger is a
record, not a gate: a run whose row cannot be written still ran (the caller warns).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING

from singlerun.errors import StoreError

if TYPE_CHECKING:
    from singlerun.record import Record

FILE_NAME = "history.db"  # key files all end in .lock/.rec/.queue/.stop: no clash
_BUSY_TIMEOUT_MS = 5_000  # plenty for ms-long inserts; a wedged ledger costs a run 5 s
_TRANSIENT = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # primary result codes


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
            json.dumps(record.command),
        )

    @classmethod
    def lost(cls, record: Record) -> Run:
        """The row of a run whose singlerun died: its end and status are unknown."""
        return cls.of(record, None, None, "lost")

    @property
    def argv(self) -> list[str]:
        argv = json.loads(self.command)
        return [str(a) for a in argv] if isinstance(argv, list) else []


_COLUMNS = ", ".join(f'"{f.name}"' for f in fields(Run))
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  job_id TEXT PRIMARY KEY, "group" TEXT NOT NULL, name TEXT NOT NULL, host TEXT NOT NULL,
  pid INTEGER NOT NULL, started_at REAL NOT NULL, ended_at REAL, exit_status INTEGER,
  outcome TEXT NOT NULL, command TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs ("group", name, started_at);
"""


@contextlib.contextmanager
def _failing_as(action: str) -> Iterator[None]:
    """sqlite3's errors leave the ledger as one StoreError (one line, exit 125)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"cannot {action} the run history: {exc}") from None


class Ledger:
    def __init__(self, lock_dir: str) -> None:
        self.path = os.path.join(lock_dir, FILE_NAME)

    def _connect(self) -> sqlite3.Connection:
        if os.path.islink(self.path):
            raise sqlite3.OperationalError(f"{self.path} is a symbolic link")
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across crashes of processes
        db.executescript(_SCHEMA)
        return db

    def add(self, *runs: Run) -> None:
        """Insert rows (once per job ID: a run cannot end twice).

        Retried until the busy timeout runs out: some SQLITE_BUSY cases never reach the busy
        handler (switching a brand-new ledger to WAL while another process has it open is
        one), and under many runs finishing at once each would otherwise lose a row.
        """
        with _failing_as("write"):
            self._add(runs)

    def _add(self, runs: tuple[Run, ...]) -> None:
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        pause = 0.005
        while True:
            try:
                db = self._connect()
                try:
                    placeholders = ", ".join("?" * len(fields(Run)))
                    db.executemany(
                        f"INSERT OR IGNORE INTO runs ({_COLUMNS}) VALUES ({placeholders})",
                        [astuple(run) for run in runs],
                    )
                    return
                finally:
                    db.close()
            except sqlite3.OperationalError as exc:
                transient = exc.sqlite_errorcode & 0xFF in _TRANSIENT
                if not transient or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def runs(
        self, group: str | None = None, name: str | None = None, limit: int | None = None
    ) -> list[Run]:
        """Finished runs, newest first."""
        if not os.path.exists(self.path):
            return []
        where, args = [], []
        for column, value in (('"group"', group), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, job_id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with _failing_as("read"):
            db = self._connect()
            try:
                return [Run(*row) for row in db.execute(sql, args)]
            finally:
                db.close()

    def last_by_key(self) -> dict[tuple[str, str], Run]:
        """The newest finished run of every key."""
        if not os.path.exists(self.path):
            return {}
        with _failing_as("read"):
            db = self._connect()
            try:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM runs r WHERE started_at = (SELECT MAX(started_at) "
                    'FROM runs WHERE "group" = r."group" AND name = r.name)'
                )
                return {(run.group, run.name): run for run in (Run(*row) for row in rows)}
            finally:
                db.close()
