"""Per-key figures for monitoring (`check`, `metrics`), kept by the ledger itself.

A trigger on the runs table counts each inserted run by outcome and keeps a copy of each
key's newest run and newest success, in the same transaction as the insert. Reading them is
then a read of two small tables (one row per key and outcome), not a scan of the whole
history: a million runs cost ~0.75 s to scan, these ~20 ms. The counts are cumulative,
"since the history began": trimming the history (--history-size) does not lower them, as a
Prometheus counter must not drop. A ledger made before these tables existed gets them, and
their contents from its runs, at its next fold; until then readers scan.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from singlerun.history import Run, sound
from singlerun.keystats import KeyStats

_NAMES = list(Run._fields)
_COLUMNS = ", ".join(f'"{n}"' for n in _NAMES)
_NEW = ", ".join(f'NEW."{n}"' for n in _NAMES)
_UPDATE = ", ".join(f'"{n}" = excluded."{n}"' for n in _NAMES)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outcomes (
  "group" TEXT NOT NULL, name TEXT NOT NULL, outcome TEXT NOT NULL, runs INTEGER NOT NULL,
  PRIMARY KEY ("group", name, outcome));
CREATE TABLE IF NOT EXISTS newest (
  kind TEXT NOT NULL, {_COLUMNS}, PRIMARY KEY (kind, "group", name));
CREATE TRIGGER IF NOT EXISTS count_run AFTER INSERT ON runs BEGIN
  INSERT INTO outcomes VALUES (NEW."group", NEW.name, NEW.outcome, 1)
    ON CONFLICT DO UPDATE SET runs = runs + 1;
  INSERT INTO newest SELECT 'last', {_NEW} WHERE 1
    ON CONFLICT DO UPDATE SET {_UPDATE} WHERE excluded.started_at >= newest.started_at;
  INSERT INTO newest SELECT 'ok', {_NEW} WHERE NEW.outcome = 'ok'
    ON CONFLICT DO UPDATE SET {_UPDATE} WHERE excluded.started_at >= newest.started_at;
END;
"""

_BACKFILL = f"""
INSERT INTO outcomes SELECT "group", name, outcome, COUNT(*) FROM runs GROUP BY 1, 2, 3;
INSERT INTO newest SELECT 'last', {_COLUMNS} FROM
  (SELECT {_COLUMNS}, MAX(started_at) FROM runs GROUP BY "group", name);
INSERT INTO newest SELECT 'ok', {_COLUMNS} FROM
  (SELECT {_COLUMNS}, MAX(started_at) FROM runs WHERE outcome = 'ok' GROUP BY "group", name);
"""


def _has_tables(db: sqlite3.Connection) -> bool:
    found = db.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('outcomes', 'newest', 'count_run')"
    ).fetchone()
    return bool(found[0] == 3)


BACKFILL_MAX = 1_000_000  # runs: filling the tables from more could outlast ledger.BOUND


def install(db: sqlite3.Connection, added: dict[str, str]) -> None:
    """Make the tables and the trigger (a writing connection in autocommit mode), and fill
    them from the runs of a ledger that had none, in one transaction. A ledger of more than
    BACKFILL_MAX runs (--history-size above it, from an older singlerun) is left without
    them, and its readers scan: the fill would not fit in a fold's time bound. `added`: the
    runs table's columns since its first version, and their types."""
    if _has_tables(db):
        _upgrade(db, added)
        return
    low, high = db.execute("SELECT MIN(rowid), MAX(rowid) FROM runs").fetchone()
    if low is not None and high - low > BACKFILL_MAX:
        return
    with _immediate(db):
        if not _has_tables(db):  # again, under the write lock
            for old in (
                "TABLE IF EXISTS outcomes",
                "TABLE IF EXISTS newest",
                "TRIGGER IF EXISTS count_run",
            ):
                db.execute(f"DROP {old}")
            for statement in (*_split(SCHEMA), *_split(_BACKFILL)):
                db.execute(statement)


def _upgrade(db: sqlite3.Connection, added: dict[str, str]) -> None:
    """Give `newest` the columns the runs table gained since it was made, and make the
    trigger again (it names every column); the counts are kept."""

    def missing() -> list[str]:
        have = {row[1] for row in db.execute("PRAGMA table_info(newest)")}
        return [n for n in _NAMES if n not in have]

    if not missing():
        return
    with _immediate(db):
        for name in missing():  # again, under the write lock; in Run's order, as inserted
            db.execute(f'ALTER TABLE newest ADD COLUMN "{name}" {added[name]}')
        db.execute("DROP TRIGGER IF EXISTS count_run")
        (trigger,) = (s for s in _split(SCHEMA) if s.startswith("CREATE TRIGGER"))
        db.execute(trigger)


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on a connection in autocommit mode: committed, or rolled back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _split(script: str) -> list[str]:
    """Statements of a script; the trigger's body is one statement with its inner `;`."""
    out, current = [], ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                out.append(current.strip())
            current = ""
    return out


def forget(db: sqlite3.Connection, group: str, name: str) -> None:
    if _has_tables(db):
        db.execute('DELETE FROM outcomes WHERE "group" = ? AND name = ?', (group, name))
        db.execute('DELETE FROM newest WHERE "group" = ? AND name = ?', (group, name))


def read(
    db: sqlite3.Connection, where: str, args: list[str], stats: dict[tuple[str, str], KeyStats]
) -> None:
    """Add each key's figures to `stats`; `where` is `AND ...` on "group" and name."""
    if not _has_tables(db):
        _scan(db, where, args, stats)
        return
    for row in db.execute(f"SELECT kind, {_COLUMNS} FROM newest WHERE 1{where}", args):
        run = Run(*row[1:])
        if not sound(run):  # a row a member of a shared directory forged
            continue
        entry = stats.setdefault((run.group, run.name), KeyStats())
        if row[0] == "last":
            entry.last = run
        else:
            entry.last_success = run
    counts = f'SELECT "group", name, outcome, runs FROM outcomes WHERE 1{where}'
    for group, name, outcome, runs in db.execute(counts, args):
        entry = stats.setdefault((group, name), KeyStats())
        entry.outcomes = {**(entry.outcomes or {}), outcome: runs}


def _scan(
    db: sqlite3.Connection, where: str, args: list[str], stats: dict[tuple[str, str], KeyStats]
) -> None:
    """The same from the runs themselves (a ledger not yet given the tables)."""
    # SQLite fills the other columns from the row with the MAX (its "bare columns" rule).
    newest = f"SELECT {_COLUMNS}, MAX(started_at) FROM runs WHERE %s{where} GROUP BY 2, 3"
    for row in db.execute(newest % "1", args):
        if sound(run := Run(*row[:-1])):
            stats.setdefault((run.group, run.name), KeyStats()).last = run
    for row in db.execute(newest % "outcome = 'ok'", args):
        if sound(run := Run(*row[:-1])):
            stats.setdefault((run.group, run.name), KeyStats()).last_success = run
    counts = f'SELECT "group", name, outcome, COUNT(*) FROM runs WHERE 1{where} GROUP BY 1, 2, 3'
    for group, name, outcome, count in db.execute(counts, args):
        entry = stats.setdefault((group, name), KeyStats())
        entry.outcomes = {**(entry.outcomes or {}), outcome: count}
