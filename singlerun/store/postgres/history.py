"""A key's past on PostgreSQL: the run history (a table of journal lines, trimmed to the
newest --history-size runs every 100 inserts), and forgetting an idle key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singlerun.history import KEEP, Run, journal_line, parse_journal
from singlerun.store.postgres import schema

if TYPE_CHECKING:
    from singlerun.keys import JobKey, KeyFilter
    from singlerun.store.postgres.session import Session

_TRIM_EVERY = 100  # runs between two trims of the history


def add(db: Session, runs: tuple[Run, ...], keep: int | None) -> None:
    with db.errors("write the run history to"):
        for run in runs:
            rows = db.q(
                "INSERT INTO {s}.runs (job_id, \"group\", name, started_at, line) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id) DO UPDATE SET line = "
                "excluded.line WHERE %s RETURNING id",  # Run.guessed: its own row wins
                run.job_id, run.group, run.name, run.started_at, journal_line(run),
                not run.guessed,
            )  # fmt: skip
            if rows and rows[0][0] % _TRIM_EVERY == 0:
                db.q("DELETE FROM {s}.runs WHERE id <= %s", rows[0][0] - (keep or KEEP))


def _lines(db: Session, sql: str, *args: Any) -> list[Run]:
    with db.errors("read the run history from"):
        rows = db.q(sql, *args)
    return [run for (line,) in rows for run in parse_journal(bytes(line))]


def runs(db: Session, only: KeyFilter, limit: int | None) -> list[Run]:
    return _lines(
        db,
        f"SELECT {schema.sized('line', 2)} FROM {{s}}.runs "
        "WHERE (%s::text IS NULL OR \"group\" = %s) "
        "AND (%s::text IS NULL OR name = %s) ORDER BY started_at DESC, job_id DESC LIMIT %s",
        only.group, only.group, only.name, only.name, limit,
    )  # fmt: skip


def last_runs(db: Session) -> dict[tuple[str, str], Run]:
    runs = _lines(
        db,
        f'SELECT DISTINCT ON ("group", name) {schema.sized("line", 2)} '
        "FROM {s}.runs "
        'ORDER BY "group", name, started_at DESC',
    )
    return {(r.group, r.name): r for r in runs}


def forget(db: Session, key: JobKey, dry_run: bool) -> bool:
    """`clean --idle`: the rows of a key nobody holds or waits for, and its runs."""
    held = f"({schema.HELD.format(k='h.lock_key')} OR {schema.LEASE_LEFT.format(h='h.')} > 0)"
    waiting = schema.HELD.format(k="w.lock_key")
    with db.errors("forget in"):
        busy = db.q(
            f"SELECT EXISTS (SELECT 1 FROM {{s}}.holders h WHERE stem = %s AND {held}) "
            f"OR EXISTS (SELECT 1 FROM {{s}}.waiters w WHERE stem = %s AND {waiting}) "
            "OR EXISTS (SELECT 1 FROM {s}.adrift WHERE stem = %s AND until > clock_timestamp())",
            key.stem, key.stem, key.stem,
        )[0][0]  # fmt: skip
        if busy or dry_run:
            return not busy
        # Each delete re-checks: a run that starts meanwhile keeps its row.
        db.q(f"DELETE FROM {{s}}.holders h WHERE stem = %s AND NOT {held}", key.stem)
        db.q(f"DELETE FROM {{s}}.waiters w WHERE stem = %s AND NOT {waiting}", key.stem)
        db.q("DELETE FROM {s}.adrift WHERE stem = %s AND until <= clock_timestamp()", key.stem)
        db.q('DELETE FROM {s}.runs WHERE "group" = %s AND name = %s', key.group, key.name)
    return True
