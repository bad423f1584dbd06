"""The FIFO wait queue of one key on PostgreSQL: a table of tickets, each held alive by its
waiter's advisory "ticket" lock, which dies with the waiter's session.

A ticket table rather than the server's lock queue alone: PostgreSQL does not promise the
order in which it grants a contended lock, and `status` must show who waits. Still nobody
polls: a waiter sleeps in the server's lock queue behind the ticket just ahead of it (a
shared-lock request on that waiter's lock, granted the moment it leaves or dies), and the
head of the queue sleeps on the slot itself, or with several slots on a NOTIFY from a
releasing holder (checking every second for a holder whose session died). --wait-timeout
is the server's lock_timeout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from singlerun.keys import JobKey
from singlerun.lease import Lease
from singlerun.record import Record, encode
from singlerun.store.postgres import schema
from singlerun.store.postgres.session import Session, lock_key

MULTI_SLOT_CHECK = 1.0  # s: the head waiter's check for a slot whose holder died silently
REJOIN = 5.0  # s a waiter whose session dropped keeps its place (outage.FIRST…LONGEST tries)


def channel(session: Session, key: JobKey) -> str:
    """The NOTIFY channel of a key's releases."""
    return f"singlerun_{lock_key(session.schema, key.stem) & 0xFFFFFFFFFFFF:x}"


def _lock_timeout(session: Session, deadline: float | None) -> None:
    if deadline is None:
        session.q("SET lock_timeout = 0")
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise session.psycopg.errors.LockNotAvailable("timeout")
    session.q(f"SET lock_timeout = {max(1, int(remaining * 1000))}")


def _pause(deadline: float | None, session: Session) -> None:
    """A moment for a waiter ahead to come back (its row says when it left)."""
    pause = 0.2
    if deadline is not None:
        pause = min(pause, deadline - time.monotonic())
        if pause <= 0:
            raise session.psycopg.errors.LockNotAvailable("timeout")
    time.sleep(pause)


def _sleep_for_notify(session: Session, deadline: float | None) -> None:
    timeout = MULTI_SLOT_CHECK
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise session.psycopg.errors.LockNotAvailable("timeout")
    for _ in session.conn.notifies(timeout=timeout, stop_after=1):
        pass


class Place:
    """A waiter's place in the queue, kept across a reconnect (store/outage.py)."""

    seq: int | None = None


def wait(
    session: Session,
    key: JobKey,
    me: Record,
    *,
    slots: int,
    deadline: float | None,
    take_any: Callable[[], Lease | None],
    take_first: Callable[[], Lease],
    place: Place,
) -> Lease:
    """Queue for a slot of `key` (again at `place`, if it has one: a waiter whose session
    dropped comes back where it was); `take_any` tries every slot, `take_first` sleeps on
    slot 0 in the server's lock queue. Raises LockNotAvailable when `deadline` passes."""
    q = session.q
    ticket = lock_key(session.schema, key.stem, "ticket", me.job_id)
    chan = channel(session, key)
    q("SELECT pg_advisory_lock(%s)", ticket)  # ours alone: granted at once
    if place.seq is None:
        (place.seq,) = q(
            "INSERT INTO {s}.waiters (stem, job_id, record, lock_key) VALUES (%s, %s, %s, %s) "
            "RETURNING seq",
            key.stem, me.job_id, encode(me), ticket,
        )[0]  # fmt: skip
    else:  # back after a dropped session: our row (or, if it was pruned, the same again)
        q(
            "INSERT INTO {s}.waiters (stem, job_id, seq, record, lock_key) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stem, job_id) DO UPDATE "
            "SET dead_since = NULL",
            key.stem, me.job_id, place.seq, encode(me), ticket,
        )  # fmt: skip
    seq = place.seq
    q(f'LISTEN "{chan}"')
    try:
        while True:
            # A waiter ahead whose ticket lock is free is dead, or its session dropped and
            # it is on its way back: its row goes only once it has had REJOIN seconds.
            ahead = q(
                f"SELECT w.lock_key, {schema.HELD.format(k='w.lock_key')}, COALESCE("
                "w.dead_since < clock_timestamp() - %s * interval '1 second', false) "
                "FROM {s}.waiters w WHERE w.stem = %s AND w.seq < %s ORDER BY w.seq",
                REJOIN, key.stem, seq,
            )  # fmt: skip
            if dead := [k for k, alive, gone in ahead if not alive and gone]:
                q("DELETE FROM {s}.waiters WHERE stem = %s AND lock_key = ANY(%s)", key.stem, dead)
            if rejoining := [k for k, alive, gone in ahead if not alive and not gone]:
                q(
                    "UPDATE {s}.waiters SET dead_since = clock_timestamp() WHERE stem = %s "
                    "AND lock_key = ANY(%s) AND dead_since IS NULL",
                    key.stem, rejoining,
                )  # fmt: skip
            if live := [k for k, alive, _ in ahead if alive]:
                _lock_timeout(session, deadline)  # until the waiter just ahead goes
                q("SELECT pg_advisory_lock_shared(%s)", live[-1], blocking=True)
                q("SELECT pg_advisory_unlock_shared(%s)", live[-1])
                continue
            if rejoining:
                _pause(deadline, session)
                continue
            if (lease := take_any()) is not None:
                return lease
            if slots == 1:  # the server's lock queue wakes us the moment it frees
                _lock_timeout(session, deadline)
                return take_first()
            _sleep_for_notify(session, deadline)
    finally:
        with contextlib.suppress(session.psycopg.Error):
            if session.idle():  # not cut off inside a query (then the session is closed)
                q("SET lock_timeout = 0")
                q(f'UNLISTEN "{chan}"')
                q("DELETE FROM {s}.waiters WHERE stem = %s AND job_id = %s", key.stem, me.job_id)
                q("SELECT pg_advisory_unlock(%s)", ticket)
                q("SELECT pg_notify(%s, '')", chan)  # the next waiter moves up
