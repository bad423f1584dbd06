"""The PostgreSQL store's run history: a table of journal lines, trimmed to the newest
--history-size runs every 100 inserts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singlerun.history import KEEP, Run, journal_line, parse_journal

if TYPE_CHECKING:
    from singlerun.keys import KeyFilter
    from singlerun.store.postgres.session import Session

_TRIM_EVERY = 100  # runs between two trims of the history


def add(db: Session, runs: tuple[Run, ...], keep: int | None) -> None:
    with db.errors("write the run history to"):
        for run in runs:
            rows = db.q(
                "INSERT INTO {s}.runs (job_id, \"group\", name, started_at, line) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING RETURNING id",
                run.job_id, run.group, run.name, run.started_at, journal_line(run),
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
        "SELECT line FROM {s}.runs WHERE (%s::text IS NULL OR \"group\" = %s) "
        "AND (%s::text IS NULL OR name = %s) ORDER BY started_at DESC, job_id DESC LIMIT %s",
        only.group, only.group, only.name, only.name, limit,
    )  # fmt: skip


def last_runs(db: Session) -> dict[tuple[str, str], Run]:
    runs = _lines(
        db,
        'SELECT DISTINCT ON ("group", name) line FROM {s}.runs '
        'ORDER BY "group", name, started_at DESC',
    )
    return {(r.group, r.name): r for r in runs}
