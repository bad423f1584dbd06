"""The run ledger: the sqlite3 database that history.log is folded into.

Only a fold writes it, under the journal's exclusive flock, so writers never contend; a
rollback journal (not WAL) lets readers open it read-only, creating no file and needing no
write access (`status` and `history` leave nothing behind). Reads merge the ledger with the
journal not yet folded, so a run is visible the moment it has ended.

Every use of the ledger ends within BOUND seconds, waits for a lock and statements alike:
in a shared directory any member can rewrite it (a view or a trigger that never ends), and
neither `status` nor a finishing run may hang on it (issue 25).

Long: one class owns the database from opening to reading (migrate, fold, trim, forget),
so that every step is under the same time bound and the same error wrapper.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Iterator

from singlerun.errors import StoreError
from singlerun.history import KEEP, Run, journal_line, parse_journal, sound
from singlerun.keystats import KeyStats
from singlerun.store.files import ledgerstats
from singlerun.store.files.journal import JOURNAL, lock_within
from singlerun.store.files.lockdir import LockDir

FILE_NAME = "history.db"
BOUND = 3.0  # seconds: plenty for ms-long inserts and reads; a wedged ledger costs this
_STEPS = 1000  # SQLite VM steps between two looks at the clock (well under a millisecond)
_TRANSIENT = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # primary result codes
_SIDE_FILES = ("-journal", "-wal", "-shm")  # sqlite3's own files beside the database

_RUN_COLUMNS = set(Run._fields)
_COLUMNS = ", ".join(f'"{name}"' for name in Run._fields)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  job_id TEXT PRIMARY KEY, "group" TEXT NOT NULL, name TEXT NOT NULL, host TEXT NOT NULL,
  pid INTEGER NOT NULL, started_at REAL NOT NULL, ended_at REAL, exit_status INTEGER,
  outcome TEXT NOT NULL, command TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 1,
  run_id TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS runs_by_key ON runs ("group", name, started_at);
"""
# Columns added since the first schema: a ledger written by an older singlerun gains them.
_ADDED = {
    "attempt": "INTEGER NOT NULL DEFAULT 1",
    "run_id": "TEXT NOT NULL DEFAULT ''",
    "invocation_id": "TEXT NOT NULL DEFAULT ''",
    "stopped_by": "TEXT NOT NULL DEFAULT ''",
}


@contextlib.contextmanager
def _failing_as(action: str) -> Iterator[None]:
    """sqlite3's errors leave the ledger as one StoreError (one line, exit 125)."""
    try:
        yield
    except sqlite3.Error as exc:
        interrupted = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT
        why = f"gave up after {BOUND:g} s" if interrupted else str(exc)
        raise StoreError(f"cannot {action} the run history: {why}") from None


def _bounded(db: sqlite3.Connection, deadline: float) -> sqlite3.Connection:
    """Interrupt any statement, and any wait for a lock, that would end after `deadline`."""
    db.set_progress_handler(lambda: time.monotonic() > deadline, _STEPS)
    left_ms = max(1, int((deadline - time.monotonic()) * 1000))
    db.execute(f"PRAGMA busy_timeout = {left_ms}")
    return db


class Ledger:
    def __init__(self, lock_dir: LockDir) -> None:
        self.dir = lock_dir

    def _journal(self) -> list[Run]:
        """The rows not yet folded into the ledger."""
        found = self.dir.read(JOURNAL)
        return parse_journal(found[0]) if found else []

    def fold(self, keep: int = KEEP) -> None:
        """Move the journal's rows into the ledger, then empty the journal; appends wait."""
        try:
            fd = self.dir.open(JOURNAL, os.O_RDWR)
        except OSError as exc:
            raise self.dir.error("fold the run history", JOURNAL, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # being folded, or appended to: a later run folds it
            with os.fdopen(os.dup(fd), "rb") as f:
                runs = parse_journal(f.read())
            if runs:
                deadline = time.monotonic() + BOUND
                self.add(*runs, deadline=deadline)
                self._trim(keep, deadline)
            os.ftruncate(fd, 0)  # only once every row is in the ledger
        finally:
            os.close(fd)

    def forget(self, group: str, name: str) -> None:
        """Remove a key's runs from the journal and the ledger (`clean --idle`)."""
        try:
            fd = self.dir.open(JOURNAL, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise self.dir.error("rewrite the run history", JOURNAL, exc) from None
        try:
            if fd is not None:
                try:
                    lock_within(fd, fcntl.LOCK_EX)  # appends wait meanwhile
                except OSError as exc:
                    raise self.dir.error("rewrite the run history", JOURNAL, exc) from None
                with os.fdopen(os.dup(fd), "rb") as f:
                    kept = [
                        r for r in parse_journal(f.read()) if (r.group, r.name) != (group, name)
                    ]
                os.ftruncate(fd, 0)
                os.pwrite(fd, b"".join(journal_line(r) for r in kept), 0)
            if self._check_files():
                with _failing_as("forget in"):
                    db = self._connect(time.monotonic() + BOUND)
                    try:
                        db.execute('DELETE FROM runs WHERE "group" = ? AND name = ?', (group, name))
                        ledgerstats.forget(db, group, name)
                    finally:
                        db.close()
        finally:
            if fd is not None:
                os.close(fd)

    def _check_files(self) -> bool:
        """Whether the ledger exists; refuses a planted symlink or non-file at any of the
        names sqlite3 opens (it follows symlinks and cannot be given O_NOFOLLOW)."""
        exists = False
        for name in (FILE_NAME, *(FILE_NAME + side for side in _SIDE_FILES)):
            st = self.dir.lstat(name)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise sqlite3.OperationalError(f"{self.dir.show(name)} is not a regular file")
            exists = exists or (st is not None and name == FILE_NAME)
        return exists

    def _connect(self, deadline: float) -> sqlite3.Connection:
        """A writing connection; creates the ledger with the directory's file mode (sqlite3
        gives its journal the database's mode)."""
        if not self._check_files():
            with contextlib.suppress(FileExistsError):
                os.close(self.dir.open(FILE_NAME, os.O_WRONLY, create=True))
        db = sqlite3.connect(self.dir.at(FILE_NAME), timeout=BOUND, isolation_level=None)
        _bounded(db, deadline)
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "delete":
            db.execute("PRAGMA journal_mode = DELETE")  # a ledger from a WAL-mode singlerun
        db.executescript(_SCHEMA)
        have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for column, kind in _ADDED.items():
            if column not in have:
                db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
        ledgerstats.install(db, _ADDED)
        return db

    def _reader(self) -> sqlite3.Connection | None:
        """A read-only connection, None if there is no ledger yet, good for BOUND seconds.
        A ledger an older singlerun left (WAL mode, missing columns) is brought up to date
        once, by whoever reads it first."""
        if not self._check_files():
            return None
        deadline = time.monotonic() + BOUND
        if self._wal_mode():
            self._connect(deadline).close()
        db = self._read_only(deadline)
        if not {row[1] for row in db.execute("PRAGMA table_info(runs)")} >= _RUN_COLUMNS:
            db.close()
            self._connect(deadline).close()
            db = self._read_only(deadline)
        return db

    def _read_only(self, deadline: float) -> sqlite3.Connection:
        uri = f"file:{self.dir.at(FILE_NAME)}?mode=ro"
        return _bounded(sqlite3.connect(uri, uri=True, isolation_level=None), deadline)

    def _wal_mode(self) -> bool:
        """Whether the ledger was left in WAL mode (header byte 18 is 2), which read-only
        connections cannot open without the -shm file."""
        found = self.dir.read(FILE_NAME, 100)
        return found is not None and len(found[0]) >= 19 and found[0][18] == 2

    def add(self, *runs: Run, deadline: float | None = None) -> None:
        """Insert rows (once per job ID: a run cannot end twice).

        Retried until the deadline (BOUND from now by default): some SQLITE_BUSY cases never
        reach the busy handler (switching a brand-new ledger to WAL while another process
        has it open is one), and under many runs finishing at once each would otherwise
        lose a row.
        """
        with _failing_as("write"):
            self._add(runs, time.monotonic() + BOUND if deadline is None else deadline)

    def _add(self, runs: tuple[Run, ...], deadline: float) -> None:
        pause = 0.005
        while True:
            try:
                db = self._connect(deadline)
                try:
                    placeholders = ", ".join("?" * len(Run._fields))
                    # One transaction: in autocommit each row would be a commit (a sync) of
                    # its own, some 500 of them for a journal's worth.
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(
                        f"INSERT OR IGNORE INTO runs ({_COLUMNS}) VALUES ({placeholders})",
                        [tuple(run) for run in runs],
                    )
                    db.execute("COMMIT")
                    return
                finally:
                    db.close()
            except sqlite3.OperationalError as exc:
                transient = exc.sqlite_errorcode & 0xFF in _TRANSIENT
                if not transient or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def _trim(self, keep: int, deadline: float) -> None:
        """Keep the newest `keep` runs: the ledger must not grow forever."""
        with _failing_as("trim"):
            db = self._connect(deadline)
            try:
                db.execute(
                    "DELETE FROM runs WHERE job_id IN (SELECT job_id FROM runs "
                    f"ORDER BY started_at DESC LIMIT -1 OFFSET {int(keep)})"
                )
            finally:
                db.close()

    def runs(
        self, group: str | None = None, name: str | None = None, limit: int | None = None
    ) -> list[Run]:
        """Finished runs, newest first (the ledger's and the journal's)."""
        fresh = [r for r in self._journal() if group in (None, r.group) and name in (None, r.name)]
        merged = {r.job_id: r for r in (*self._ledger_runs(group, name, limit), *fresh)}
        newest = sorted(merged.values(), key=lambda r: (r.started_at, r.job_id), reverse=True)
        return newest if limit is None else newest[:limit]

    def _ledger_runs(self, group: str | None, name: str | None, limit: int | None) -> list[Run]:
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
            db = self._reader()
            if db is None:
                return []
            try:
                return [r for row in db.execute(sql, args) if sound(r := Run(*row))]
            finally:
                db.close()

    def last_by_key(self) -> dict[tuple[str, str], Run]:
        """The newest finished run of every key (the ledger's and the journal's)."""
        last = self._ledger_last()
        for run in self._journal():
            known = last.get((run.group, run.name))
            if known is None or run.started_at >= known.started_at:
                last[(run.group, run.name)] = run
        return last

    def stats(self, group: str | None, name: str | None) -> dict[tuple[str, str], KeyStats]:
        """Each key's KeyStats, as the ledger keeps them (ledgerstats.py), merged with the
        journal's rows."""
        where, args = "", []
        for column, value in (('"group"', group), ("name", name)):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        stats: dict[tuple[str, str], KeyStats] = {}
        with _failing_as("read"):
            db = self._reader()
            if db is not None:
                try:
                    ledgerstats.read(db, where, args, stats)
                finally:
                    db.close()
        seen: set[str] = set()
        for run in self._journal():
            keyed = group in (None, run.group) and name in (None, run.name)
            if keyed and run.job_id not in seen:
                seen.add(run.job_id)
                stats.setdefault((run.group, run.name), KeyStats()).add(run)
        return stats

    def _ledger_last(self) -> dict[tuple[str, str], Run]:
        with _failing_as("read"):
            db = self._reader()
            if db is None:
                return {}
            try:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM runs r WHERE started_at = (SELECT MAX(started_at) "
                    'FROM runs WHERE "group" = r."group" AND name = r.name)'
                )
                runs = (r for row in rows if sound(r := Run(*row)))
                return {(run.group, run.name): run for run in runs}
            finally:
                db.close()
