"""Stop requests on PostgreSQL: a row per held slot, written by `stop`/`--replace` on any
host, read by the holder's renewal probe and removed with its release. Each request is
also NOTIFYed on the key's stop channel, which the holder's session LISTENs to: it renews
only every third of its TTL, and hears of a request at its next tick (a second at most)
without asking the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singlerun.lease import StopRequest

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.store.postgres.session import Session


def channel(db: Session, key: JobKey) -> str:
    """The NOTIFY channel of the key's stop requests."""
    from singlerun.store.postgres.session import lock_key

    return f"singlerun_stop_{lock_key(db.schema, key.stem) & 0xFFFFFFFFFFFF:x}"


def write(db: Session, key: JobKey, slot: int, request: StopRequest) -> None:
    db.q(
        "INSERT INTO {s}.stops VALUES (%s, %s, %s, %s) ON CONFLICT (stem, slot) "
        "DO UPDATE SET job_id = excluded.job_id, request = excluded.request",
        key.stem, slot, request.job_id, request.encode(),
    )  # fmt: skip
    db.q("SELECT pg_notify(%s, '')", channel(db, key))
