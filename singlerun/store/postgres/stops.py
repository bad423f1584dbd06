"""Stop requests on PostgreSQL: a row per held slot, written by `stop`/`--replace` on any
host and taken (read and deleted) by the holder's own singlerun."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singlerun.lease import StopRequest

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.store.postgres.session import Session


def write(db: Session, key: JobKey, slot: int, request: StopRequest) -> None:
    db.q(
        "INSERT INTO {s}.stops VALUES (%s, %s, %s, %s) ON CONFLICT (stem, slot) "
        "DO UPDATE SET job_id = excluded.job_id, request = excluded.request",
        key.stem, slot, request.job_id, request.encode(),
    )  # fmt: skip


def take(db: Session, key: JobKey, slot: int, job_id: str) -> StopRequest | None:
    """The request for the holder `job_id` of `slot`, if there is one; it is removed."""
    rows = db.q(
        "DELETE FROM {s}.stops WHERE stem = %s AND slot = %s AND job_id = %s RETURNING request",
        key.stem, slot, job_id,
    )  # fmt: skip
    return StopRequest.parse(rows[0][0]) if rows else None
