"""What the PostgreSQL store shows: its rows as key states (holders, stale records,
waiters, runs adrift) for `status`, `stop` and `clean`. Reads only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singlerun.keys import JobKey
from singlerun.record import parse
from singlerun.store.postgres import adrift, schema
from singlerun.store.protocol import KeyState

if TYPE_CHECKING:
    from singlerun.store.postgres.session import Session


def holder_rows(db: Session, stem: str | None = None) -> list[tuple[Any, ...]]:
    """(stem, slot, record, live) of every holder row: live while its session holds the
    lock or its lease is in force."""
    where = "" if stem is None else "WHERE stem = %s"
    held = f"({schema.HELD.format(k='h.lock_key')} OR {schema.LEASE_LEFT.format(h='h.')} > 0)"
    with db.errors("read"):
        return db.q(
            f"SELECT stem, slot, {schema.sized('record')}, {held} "
            f"FROM {{s}}.holders h {where} ORDER BY stem, slot",
            *(() if stem is None else (stem,)),
        )


def states(db: Session) -> list[KeyState]:
    found: dict[str, KeyState] = {}

    def of(stem: str) -> KeyState:
        return found.setdefault(stem, KeyState(stem, JobKey.from_stem(stem)))

    for stem, _, data, live in holder_rows(db):
        record = parse(bytes(data))
        if live and record is not None:
            of(stem).holders.append(record)
        elif live:
            of(stem).unrecorded += 1
        else:
            of(stem).stale.append(record)
    held = schema.HELD.format(k="w.lock_key")
    with db.errors("read"):  # a dead waiter's row names its key for `clean`
        sized = schema.sized("record")
        rows = db.q(f"SELECT stem, {sized}, {held} FROM {{s}}.waiters w ORDER BY seq")
        for stem, data, live in rows:
            if live and (record := parse(bytes(data))) is not None:
                of(stem).waiters.append(record)
            else:
                of(stem)
        for stem, record in adrift.live(db):
            of(stem).adrift.extend([record] if record else [])
    return [state.named() for state in found.values()]
