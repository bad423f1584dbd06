"""Runs adrift on PostgreSQL: a run whose lock was lost (its session ended) and whose job
runs on (--on-lease-lost continue) keeps a row that `status` shows while the run renews
it; the row holds no slot, and grants never look at it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singlerun.record import Record, parse
from singlerun.store.postgres import schema

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.store.postgres.session import Session

_LIVE = "until > clock_timestamp()"


def announce(db: Session, key: JobKey, job_id: str, record: bytes, ttl: float) -> None:
    db.q(
        "INSERT INTO {s}.adrift VALUES (%s, %s, %s, clock_timestamp() + %s * interval '1 s') "
        "ON CONFLICT (stem, job_id) DO UPDATE SET record = excluded.record, "
        "until = excluded.until",
        key.stem, job_id, record, ttl,
    )  # fmt: skip


def end(db: Session, key: JobKey, job_id: str) -> None:
    db.q("DELETE FROM {s}.adrift WHERE stem = %s AND job_id = %s", key.stem, job_id)


def live(db: Session) -> list[tuple[str, Record | None]]:
    """(stem, record) of every run adrift whose singlerun still says so."""
    rows = db.q(f"SELECT stem, {schema.sized('record')} FROM {{s}}.adrift WHERE {_LIVE}")
    return [(stem, parse(bytes(data))) for stem, data in rows]


def prune(db: Session, stem: str) -> None:
    """Forget the rows of runs whose singlerun stopped renewing them (`clean`)."""
    db.q(f"DELETE FROM {{s}}.adrift WHERE stem = %s AND NOT {_LIVE}", stem)
