"""The PostgreSQL store: one instance of a job across many machines, on the database a team
already runs (docs/CONTRACT.md §6).

A held slot is a session-level advisory lock on a 64-bit hash of (schema, key, slot), held
on singlerun's one connection (session.py) for the whole run: strongly consistent, and it
dies with the session. Losing the connection is losing the lock: the supervisor's ticker
probes the session, and the job is stopped as for a lost Redis lease. A session that dies
frees its lock at once while its job may still run, so each holder row carries a lease
that keeps the slot taken until it runs out. Each grant takes a fencing token from a
durable sequence. Waiters queue FIFO (queue.py). psycopg is imported in session.py only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singlerun.busy import WaitTimeout
from singlerun.errors import StoreError
from singlerun.keys import JobKey, KeyFilter
from singlerun.lease import Lease, Reclaimed, Renewal, StopRequest
from singlerun.record import Record, encode, parse
from singlerun.store.base import StoreBase
from singlerun.store.postgres import adrift, history, queue, schema, stops, view
from singlerun.store.postgres.session import Session, lock_key
from singlerun.store.postgres.url import PostgresURL
from singlerun.store.postgres.url import parse as parse_url
from singlerun.store.protocol import KeyState

if TYPE_CHECKING:
    from singlerun.history import Run


@dataclass
class _Held:
    job_id: str
    lock: int  # the slot's advisory lock key
    record: bytes = b""  # as last published: shown if the lock is lost and the job runs on
    adrift: bool = False  # it was (adrift.py)
    renew_at: float = 0.0  # time.monotonic() of the next renewal (see renew)


class PostgresStore(StoreBase):
    kind = "postgres"

    @classmethod
    def open(cls, url: str, ttl: float) -> PostgresStore:
        return cls(parse_url(url), ttl)

    def __init__(self, url: PostgresURL, ttl: float) -> None:
        self.url, self.location, self.schema, self.ttl = url, url.location, url.schema, ttl
        self.db = Session(url, ttl)

    def exposure(self) -> str:
        return self.db.exposure()

    # -- acquiring -------------------------------------------------------------------------------

    def _slot_lock(self, key: JobKey, slot: int) -> int:
        return lock_key(self.schema, key.stem, slot)

    def _grant(
        self, key: JobKey, slot: int, me: Record, waiting: bool, deadline: float | None = None
    ) -> Lease | None:
        """We hold the slot's lock. A row left by a holder whose session died may still be
        in force (its job may still run): not waiting, the slot is taken; waiting, we sleep
        (holding the lock, so that nobody passes us) until it ends, or until `deadline`
        (--wait-timeout) if that comes first. Then take a fencing token and reclaim what
        was left."""
        lock = self._slot_lock(key, slot)
        left = self._q(
            f"SELECT {schema.sized('record')}, {schema.LEASE_LEFT.format(h='')} "
            "FROM {s}.holders WHERE stem = %s AND slot = %s",
            key.stem, slot,
        )  # fmt: skip
        if left and left[0][1] > 0:
            if not waiting:
                self._q("SELECT pg_advisory_unlock(%s)", lock)
                return None
            ends = time.monotonic() + float(left[0][1])
            if deadline is not None and ends > deadline:
                self.db.sleep(deadline - time.monotonic())
                self._q("SELECT pg_advisory_unlock(%s)", lock)
                raise self.db.psycopg.errors.LockNotAvailable("--wait-timeout")
            self.db.sleep(float(left[0][1]))  # interruptible: a signal ends the session
        (fence,) = self._q("SELECT nextval('{s}.fence')")[0]
        named = self._named(me, str(fence), self.ttl)
        record = encode(named or me)
        asked = time.monotonic()  # before the row's lease starts on the server's clock
        self._q(
            "INSERT INTO {s}.holders (stem, slot, job_id, fence, record, lock_key, ttl) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stem, slot) DO UPDATE SET "
            "job_id = excluded.job_id, fence = excluded.fence, record = excluded.record, "
            "lock_key = excluded.lock_key, ttl = excluded.ttl, renewed_at = clock_timestamp()",
            key.stem, slot, me.job_id, fence, record, lock, self.ttl,
        )  # fmt: skip
        self._q("DELETE FROM {s}.stops WHERE stem = %s AND slot = %s", key.stem, slot)
        self.db.listen(stops.channel(self.db, key))
        reclaimed = Reclaimed(parse(bytes(left[0][0]))) if left else None
        held = _Held(me.job_id, lock, record if named else b"", renew_at=asked + self.ttl / 3)
        return Lease(key, slot, str(fence), self.ttl, None, reclaimed, held, asked, named)

    def _sleep_on_slot(self, key: JobKey, me: Record, deadline: float | None) -> Lease:
        self.db.q("SELECT pg_advisory_lock(%s)", self._slot_lock(key, 0), blocking=True)
        lease = self._grant(key, 0, me, True, deadline)
        assert lease is not None  # waiting: it sleeps out a lease still in force
        return lease

    def _take(self, key: JobKey, n: int, me: Record, wait: bool, end: float | None) -> Lease | None:
        """The first of `n` slots that is free (`wait`, `end`: see _grant)."""
        for slot in range(n):
            (got,) = self._q("SELECT pg_try_advisory_lock(%s)", self._slot_lock(key, slot))[0]
            if got and (lease := self._grant(key, slot, me, wait, end)) is not None:
                return lease
        return None

    def _try(self, key: JobKey, me: Record, slots: int) -> Lease | None:
        with self.db.errors("use"):
            return self._take(key, slots, me, False, None)

    def _queue(self, key: JobKey, me: Record, slots: int, deadline: float | None) -> Lease:
        from singlerun.store.outage import Outage

        outage, place = Outage(self.location, key, deadline), queue.Place()
        while True:
            try:
                self._reconnect_if_dropped()
                with self.db.errors("wait on"):
                    return queue.wait(
                        self.db, key, me, slots=slots, deadline=deadline, place=place,
                        take_any=lambda: self._take(key, slots, me, True, deadline),
                        take_first=lambda: self._sleep_on_slot(key, me, deadline),
                    )  # fmt: skip
            except self.db.psycopg.errors.LockNotAvailable:  # lock_timeout: --wait-timeout
                raise WaitTimeout(key, []) from None
            except StoreError as exc:  # dropped, or no new session yet: our row keeps our place
                if not self.db.broken():
                    self.close()
                    raise
                outage.wait_out(exc.message.split(": ", 1)[-1])
            except BaseException:  # interrupted: the session's end drops our ticket's lock
                self.close()
                raise

    def regrant(self, lease: Lease, job_id: str) -> None:
        held: _Held = lease.handle
        with self.db.errors("use"):
            rows = self._q(
                "UPDATE {s}.holders SET job_id = %s, fence = nextval('{s}.fence'), "
                "renewed_at = clock_timestamp() "
                "WHERE stem = %s AND slot = %s AND job_id = %s RETURNING fence",
                job_id, lease.key.stem, lease.slot, held.job_id,
            )  # fmt: skip
        if not rows:
            raise StoreError("the lease was lost between two attempts")
        lease.token = str(rows[0][0])
        held.job_id = job_id

    def publish(self, lease: Lease, record: Record) -> None:
        held: _Held = lease.handle
        held.record = encode(record)
        with self.db.errors("use"):
            self._q(
                "UPDATE {s}.holders SET record = %s WHERE stem = %s AND slot = %s AND job_id = %s",
                held.record, lease.key.stem, lease.slot, held.job_id,
            )  # fmt: skip

    def adrift(self, lease: Lease) -> None:
        held: _Held = lease.handle
        held.adrift = True
        try:
            self._reconnect_if_dropped()  # the lock was lost with its session, likely
            with self.db.errors("use"):
                adrift.announce(self.db, lease.key, held.job_id, held.record, self.ttl)
        except StoreError:
            pass

    # -- the lease: a probe of the session, never waited for ---------------------------------

    def renew(self, lease: Lease) -> Renewal:
        """Is the session alive (then it holds its lock: only its end, or our own unlock,
        frees a session lock), is the row still ours, and was a stop asked for? The probe
        also moves the row's lease on; it reads no lock table, so it costs the same however
        many locks the server holds (issue 21). A broken connection is a lost lock (it died
        with the session); no answer yet is 'unknown', which the ticker turns into a loss
        at the lease's deadline.

        The probe goes every third of the TTL, not every tick (a tenth of the server's work
        at the default TTL, issue 21): between two, a tick only reads what the server has
        sent unasked, which tells of a session's end and of a stop request (stops.py), and
        a request is then probed for at once."""
        held: _Held = lease.handle
        try:
            stop_asked = self.db.heard(stops.channel(self.db, lease.key))
        except self.db.psycopg.Error:
            return Renewal(False)
        if not (stop_asked or self.db.probing or time.monotonic() >= held.renew_at):
            return Renewal(None)  # nothing new: the last renewal stands
        probe = (
            "UPDATE {s}.holders SET renewed_at = clock_timestamp() WHERE stem = $1 "
            "AND slot = $2::integer AND job_id = $3 RETURNING true, "
            "(SELECT request FROM {s}.stops WHERE stem = $1 AND slot = $2::integer "
            "AND job_id = $3)"
        )
        args = [lease.key.stem, str(lease.slot), held.job_id]
        try:
            answer = self.db.probe(probe, args)
        except self.db.psycopg.OperationalError:
            return Renewal(False)
        if answer is None:
            return Renewal(None)
        result, sent = answer
        if result is None or result.status != self.db.psycopg.pq.ExecStatus.TUPLES_OK:
            return Renewal(None)
        if result.ntuples != 1:  # no row moved on: the lock or the row is not ours
            return Renewal(False, None, sent)
        held.renew_at = sent + self.ttl / 3 - 0.1  # a tick a little early is not skipped
        request = result.get_value(0, 1)
        return Renewal(True, StopRequest.parse(request) if request else None, sent)

    def release(self, lease: Lease) -> None:
        held: _Held = lease.handle
        with self.db.errors("release the lock in"):
            mine = "WHERE stem = %s AND slot = %s AND job_id = %s"  # our stop request goes too
            gone = f"WITH gone AS (DELETE FROM {{s}}.stops {mine}) DELETE FROM {{s}}.holders {mine}"
            self._q(gone, *(lease.key.stem, lease.slot, held.job_id) * 2)
            if held.adrift:
                adrift.end(self.db, lease.key, held.job_id)
            (ours,) = self._q("SELECT pg_advisory_unlock(%s)", held.lock)[0]
            self._q("SELECT pg_notify(%s, '')", queue.channel(self.db, lease.key))
        if not ours:
            raise StoreError("the lock was lost during the run (its session ended)")

    # -- inspection and control -------------------------------------------------------------

    def _slots_held(self, key: JobKey) -> list[tuple[int, Record | None]]:
        rows = view.holder_rows(self.db, key.stem)
        return [(int(slot), parse(bytes(data))) for _, slot, data, live in rows if live]

    def inspect(self) -> list[KeyState]:
        return view.states(self.db)

    def _write_stop(self, key: JobKey, slot: int, request: StopRequest) -> None:
        with self.db.errors("use"):
            stops.write(self.db, key, slot, request)

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        removed: list[Record | None] = []
        for stem, slot, data, live in view.holder_rows(self.db, state.stem):
            if live:
                continue
            lock = lock_key(self.schema, stem, slot)
            with self.db.errors("clean"):
                # Hold the slot while removing its row, so a run starting now keeps its own.
                if not self._q("SELECT pg_try_advisory_lock(%s)", lock)[0][0]:
                    continue
                try:
                    removed.append(parse(bytes(data)))
                    if not dry_run:
                        self._q("DELETE FROM {s}.holders WHERE stem = %s AND slot = %s", stem, slot)
                finally:
                    self._q("SELECT pg_advisory_unlock(%s)", lock)
        if not dry_run:
            held = schema.HELD.format(k="lock_key")
            with self.db.errors("clean"):
                self._q(f"DELETE FROM {{s}}.waiters WHERE stem = %s AND NOT {held}", state.stem)
                adrift.prune(self.db, state.stem)
        return removed

    # -- a key's past: its runs, forgetting it (history.py) ---------------------------------------

    def forget(self, key: JobKey, *, dry_run: bool) -> bool:
        return history.forget(self.db, key, dry_run)

    def add_runs(self, *runs: Run, keep: int | None = None) -> None:
        self._reconnect_if_dropped()  # the session that held the lock ended: a new one
        history.add(self.db, runs, keep)

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        return history.runs(self.db, only, limit)

    def last_runs(self) -> dict[tuple[str, str], Run]:
        return history.last_runs(self.db)

    def _reconnect_if_dropped(self) -> None:  # the server ended the session, or a cut did
        if self.db.broken():
            self.db.close()
            self.db = Session(self.url, self.ttl)

    def _q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.db.q(sql, *args)

    def close(self) -> None:
        self.db.close()
