"""The PostgreSQL store: one instance of a job across many machines, on the database a team
already runs (SPEC §6).

A held slot is a session-level advisory lock on a 64-bit hash of (schema, key, slot), held
on singlerun's one connection for the whole run: strongly consistent, and it dies with the
session. Losing the connection is losing the lock: the supervisor's ticker probes it (a
query sent without waiting, so a black-holed server never stalls the supervisor), and the
job is stopped as for a lost Redis lease. Each grant takes a fencing token from a durable
sequence. Waiters queue FIFO in a table, each holding an advisory "ticket" lock that dies
with it, and sleep in the server's lock queue: behind the ticket ahead of them (a shared
lock request granted when that waiter leaves or dies) and, at the head, on the slot itself
(with several slots, on a NOTIFY from a releasing holder, or a one-second check for a holder
whose session died). psycopg is imported here only.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singlerun.errors import LockBusy, StoreError, UsageError, WaitTimeout
from singlerun.keys import JobKey, KeyFilter
from singlerun.record import Record, encode, parse
from singlerun.store import Lease, Reclaimed
from singlerun.store.postgres import schema
from singlerun.store.postgres.url import PostgresURL
from singlerun.store.protocol import KeyState, Renewal, StopRequest

if TYPE_CHECKING:
    from singlerun.history import Run

HISTORY_LENGTH = 10_000  # finished runs kept, as the other stores
_TRIM_EVERY = 100  # runs between two trims of the history
_MULTI_SLOT_CHECK = 1.0  # s: the head waiter's check for a slot whose holder died silently


def lock_key(*parts: str | int) -> int:
    """A stable signed 64-bit advisory lock key."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class _Held:
    job_id: str
    lock: int  # the slot's advisory lock key


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresStore:
    def __init__(self, url: PostgresURL, ttl: float) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "the PostgreSQL backend needs psycopg: pip install 'singlerun[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.location = url.location
        self.ttl = ttl
        self.schema = url.schema
        self.s = f'"{url.schema}"'
        self._probe_sent: float | None = None  # a renewal query awaiting its answer
        # Keepalives (and an unacknowledged-send limit) well inside the TTL, both ways: we
        # notice a dead server, and the server drops a dead client's session and its locks.
        beat = max(1, int(ttl / 3))
        try:
            self.conn: Any = psycopg.connect(
                url.conninfo,
                autocommit=True,
                application_name="singlerun",
                keepalives=1,
                keepalives_idle=beat,
                keepalives_interval=beat,
                keepalives_count=3,
                tcp_user_timeout=int(ttl * 1000),
            )
        except psycopg.ProgrammingError as exc:  # libpq rejected the URL's parameters
            raise UsageError(f"invalid --backend URL: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"cannot reach {self.location}: {_first_line(exc)}") from None
        with self._errors("use"):
            for setting in ("tcp_keepalives_idle", "tcp_keepalives_interval"):
                self.conn.execute(f"SET {setting} = {beat}")
            # A waiter blocked in the server's lock queue runs a query, and a server does
            # not read a running query's socket: without this, a killed waiter's session
            # (its place in the queue) would outlive it until the lock came (PostgreSQL 14+).
            with contextlib.suppress(self._psycopg.errors.UndefinedObject):
                self.conn.execute("SET client_connection_check_interval = 1000")
            self._prepare_schema()

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except self._psycopg.errors.LockNotAvailable:
            raise
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot {action} {self.location}: {_first_line(exc)}") from None

    def _q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql.replace("{s}", self.s), args or None)
        return cur.fetchall() if cur.description else []

    # -- the schema ----------------------------------------------------------------------------

    def _prepare_schema(self) -> None:
        errors = self._psycopg.errors
        try:
            (version,) = self._q("SELECT version FROM {s}.version")[0]
        except (errors.UndefinedTable, errors.InvalidSchemaName):
            version = None
        if version is not None and version > schema.VERSION:
            raise StoreError(
                f"schema {self.schema} in {self.location} is version {version}, newer than "
                f"this singlerun knows ({schema.VERSION}): upgrade singlerun"
            )
        if version == schema.VERSION:
            return
        with self.conn.transaction():
            self._q("SELECT pg_advisory_xact_lock(%s)", lock_key(self.schema, "schema"))
            exists = self._q("SELECT 1 FROM pg_namespace WHERE nspname = %s", self.schema)
            if not exists:
                try:
                    self._q("CREATE SCHEMA {s}")
                except errors.InsufficientPrivilege:
                    raise StoreError(
                        f"cannot create schema {self.schema} in {self.location}: permission "
                        f"denied (an administrator can: CREATE SCHEMA {self.schema} "
                        "AUTHORIZATION <role>)"
                    ) from None
            self._q(schema.BOOTSTRAP)
            (current,) = self._q("SELECT version FROM {s}.version")[0]
            for step in range(current + 1, schema.VERSION + 1):
                self._q(schema.MIGRATIONS[step].replace("{s}", self.s))
                self._q("UPDATE {s}.version SET version = %s", step)

    # -- acquiring -------------------------------------------------------------------------------

    def _slot_lock(self, key: JobKey, slot: int) -> int:
        return lock_key(self.schema, key.stem, slot)

    def _grant(self, key: JobKey, slot: int, me: Record, waiting: bool) -> Lease | None:
        """We hold the slot's lock. A row left by a holder whose session died may still be
        in force (its job may still run): not waiting, the slot is taken; waiting, we sleep
        (holding the lock, so that nobody passes us) until it ends. Then take a fencing
        token and reclaim what was left."""
        lock = self._slot_lock(key, slot)
        left = self._q(
            f"SELECT record, {schema.LEASE_LEFT.format(h='')} FROM {{s}}.holders "
            "WHERE stem = %s AND slot = %s",
            key.stem, slot,
        )  # fmt: skip
        if left and left[0][1] > 0:
            if not waiting:
                self._q("SELECT pg_advisory_unlock(%s)", lock)
                return None
            time.sleep(float(left[0][1]))  # interruptible: a signal ends the session
        (fence,) = self._q("SELECT nextval('{s}.fence')")[0]
        self._q(
            "INSERT INTO {s}.holders (stem, slot, job_id, fence, record, lock_key, ttl) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stem, slot) DO UPDATE SET "
            "job_id = excluded.job_id, fence = excluded.fence, record = excluded.record, "
            "lock_key = excluded.lock_key, ttl = excluded.ttl, renewed_at = clock_timestamp()",
            key.stem, slot, me.job_id, fence, encode(me), lock, self.ttl,
        )  # fmt: skip
        self._q("DELETE FROM {s}.stops WHERE stem = %s AND slot = %s", key.stem, slot)
        reclaimed = Reclaimed(parse(bytes(left[0][0]))) if left else None
        held = _Held(me.job_id, lock)
        return Lease(key, slot, str(fence), self.ttl, None, reclaimed, held, time.monotonic())

    def _try(self, key: JobKey, slots: int, me: Record, waiting: bool = False) -> Lease | None:
        for slot in range(slots):
            (got,) = self._q("SELECT pg_try_advisory_lock(%s)", self._slot_lock(key, slot))[0]
            if got and (lease := self._grant(key, slot, me, waiting)) is not None:
                return lease
        return None

    def acquire(
        self, key: JobKey, me: Record, *, slots: int, wait: bool, deadline: float | None
    ) -> Lease:
        with self._errors("use"):
            lease = self._try(key, slots, me)
        if lease is not None:
            return lease
        if not wait:
            raise LockBusy(key, self.holders(key, slots))
        try:
            with self._errors("wait on"):
                return self._wait(key, me, slots, deadline)
        except self._psycopg.errors.LockNotAvailable:  # lock_timeout: --wait-timeout ran out
            raise WaitTimeout(key, self.holders(key, slots)) from None
        except BaseException:
            # Interrupted in a blocking call, or the server went away: our session's end
            # drops the ticket's lock (the row is then dead, and pruned by the next waiter).
            self.close()
            raise

    def _lock_timeout(self, deadline: float | None) -> None:
        if deadline is None:
            self._q("SET lock_timeout = 0")
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._psycopg.errors.LockNotAvailable("timeout")
        self._q(f"SET lock_timeout = {max(1, int(remaining * 1000))}")

    def _wait(self, key: JobKey, me: Record, slots: int, deadline: float | None) -> Lease:
        ticket = lock_key(self.schema, key.stem, "ticket", me.job_id)
        channel = f"singlerun_{lock_key(self.schema, key.stem) & 0xFFFFFFFFFFFF:x}"
        self._q("SELECT pg_advisory_lock(%s)", ticket)  # ours alone: granted at once
        (seq,) = self._q(
            "INSERT INTO {s}.waiters (stem, job_id, record, lock_key) VALUES (%s, %s, %s, %s) "
            "RETURNING seq",
            key.stem, me.job_id, encode(me), ticket,
        )[0]  # fmt: skip
        self._q(f'LISTEN "{channel}"')
        try:
            while True:
                held = schema.HELD.format(k="w.lock_key")
                ahead = self._q(
                    f"SELECT w.lock_key, {held} FROM {{s}}.waiters w "
                    "WHERE w.stem = %s AND w.seq < %s ORDER BY w.seq",
                    key.stem, seq,
                )  # fmt: skip
                dead = [k for k, alive in ahead if not alive]
                if dead:
                    self._q(
                        "DELETE FROM {s}.waiters WHERE stem = %s AND lock_key = ANY(%s)",
                        key.stem,
                        dead,
                    )
                live = [k for k, alive in ahead if alive]
                if live:  # sleep until the waiter just ahead leaves or dies
                    self._lock_timeout(deadline)
                    self._q("SELECT pg_advisory_lock_shared(%s)", live[-1])
                    self._q("SELECT pg_advisory_unlock_shared(%s)", live[-1])
                    continue
                lease = self._try(key, slots, me, waiting=True)
                if lease is not None:
                    return lease
                if slots == 1:  # the server's lock queue wakes us the moment it frees
                    self._lock_timeout(deadline)
                    self._q("SELECT pg_advisory_lock(%s)", self._slot_lock(key, 0))
                    granted = self._grant(key, 0, me, waiting=True)
                    assert granted is not None
                    return granted
                self._sleep_for_notify(deadline)
        finally:
            with contextlib.suppress(self._psycopg.Error):
                if self.conn.pgconn.transaction_status == 0:  # idle: usable
                    self._q("SET lock_timeout = 0")
                    self._q(f'UNLISTEN "{channel}"')
                    self._q(
                        "DELETE FROM {s}.waiters WHERE stem = %s AND job_id = %s",
                        key.stem,
                        me.job_id,
                    )
                    self._q("SELECT pg_advisory_unlock(%s)", ticket)
                    self._q("SELECT pg_notify(%s, '')", channel)  # the next waiter moves up

    def _sleep_for_notify(self, deadline: float | None) -> None:
        timeout = _MULTI_SLOT_CHECK
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise self._psycopg.errors.LockNotAvailable("timeout")
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            pass

    def regrant(self, lease: Lease, job_id: str) -> None:
        held: _Held = lease.handle
        with self._errors("use"):
            self._settle()
            rows = self._q(
                "UPDATE {s}.holders SET job_id = %s, fence = nextval('{s}.fence'), "
                "renewed_at = clock_timestamp() "
                "WHERE stem = %s AND slot = %s AND job_id = %s AND "
                f"{schema.OURS.format(k='lock_key')} RETURNING fence",
                job_id, lease.key.stem, lease.slot, held.job_id,
            )  # fmt: skip
        if not rows:
            raise StoreError("the lease was lost between two attempts")
        lease.token = str(rows[0][0])
        held.job_id = job_id

    def publish(self, lease: Lease, record: Record) -> None:
        held: _Held = lease.handle
        with self._errors("use"):
            self._settle()
            self._q(
                "UPDATE {s}.holders SET record = %s WHERE stem = %s AND slot = %s AND job_id = %s",
                encode(record), lease.key.stem, lease.slot, held.job_id,
            )  # fmt: skip

    def job_env(self, lease: Lease) -> dict[str, str]:
        return {"SINGLERUN_FENCING_TOKEN": lease.token}

    # -- the lease: a probe of the session, never waited for ---------------------------------

    def renew(self, lease: Lease) -> Renewal:
        """Is the session alive and its lock still held, and was a stop asked for? The query
        is sent and its answer collected on a later tick if it is slow: a black-holed server
        must not stall the supervisor. A broken connection is a lost lock (it died with the
        session); no answer yet is 'unknown', which the ticker turns into a loss at the
        lease's deadline."""
        held: _Held = lease.handle
        pq = self._psycopg.pq
        pg = self.conn.pgconn
        try:
            if self._probe_sent is None:
                if pg.status != pq.ConnStatus.OK:
                    return Renewal(False)
                # Moves the row's lease on (renewed_at) only while our session holds the lock.
                ours = schema.OURS.format(k="$1::bigint")
                sql = (
                    "UPDATE {s}.holders SET renewed_at = clock_timestamp() WHERE stem = $2 "
                    f"AND slot = $3::integer AND job_id = $4 AND {ours} "
                    "RETURNING true, (SELECT request FROM {s}.stops WHERE stem = $2 "
                    "AND slot = $3::integer AND job_id = $4)"
                ).replace("{s}", self.s)
                args = [str(held.lock), lease.key.stem, str(lease.slot), held.job_id]
                pg.send_query_params(sql.encode(), [a.encode() for a in args])
                self._probe_sent = time.monotonic()
                while pg.flush():
                    select.select([], [pg.socket], [], 0.1)
            sent = self._probe_sent
            select.select([pg.socket], [], [], 0.05)  # usually answered within a tick
            pg.consume_input()
            if pg.is_busy():
                return Renewal(None)
            result = pg.get_result()
            while pg.get_result() is not None:
                pass
            self._probe_sent = None
        except self._psycopg.OperationalError:
            return Renewal(False)
        if result is None or result.status != pq.ExecStatus.TUPLES_OK:
            return Renewal(False if pg.status != pq.ConnStatus.OK else None)
        ours = result.ntuples == 1  # no row updated: the lock or the row is not ours
        request = result.get_value(0, 1) if ours else None
        stop = StopRequest.parse(request) if request else None
        return Renewal(ours, stop, sent)

    def _settle(self) -> None:
        """Collect a probe still in flight before the connection is used for anything else."""
        if self._probe_sent is None:
            return
        pg = self.conn.pgconn
        deadline = time.monotonic() + max(1.0, self.ttl)
        while pg.is_busy():
            if time.monotonic() > deadline:
                raise self._psycopg.OperationalError("the server stopped answering")
            select.select([pg.socket], [], [], 0.1)
            pg.consume_input()
        while pg.get_result() is not None:
            pass
        self._probe_sent = None

    def release(self, lease: Lease) -> None:
        held: _Held = lease.handle
        with self._errors("release the lock in"):
            self._settle()
            self._q(
                "DELETE FROM {s}.holders WHERE stem = %s AND slot = %s AND job_id = %s",
                lease.key.stem, lease.slot, held.job_id,
            )  # fmt: skip
            (ours,) = self._q("SELECT pg_advisory_unlock(%s)", held.lock)[0]
            channel = f"singlerun_{lock_key(self.schema, lease.key.stem) & 0xFFFFFFFFFFFF:x}"
            self._q("SELECT pg_notify(%s, '')", channel)
        if not ours:
            raise StoreError("the lock was lost during the run (its session ended)")

    # -- inspection and control -------------------------------------------------------------

    def _holder_rows(self, stem: str | None = None) -> list[tuple[Any, ...]]:
        """(stem, slot, record, live) of every holder row: live while its session holds the
        lock, or its lease is still in force."""
        where = "" if stem is None else "WHERE stem = %s"
        held = f"({schema.HELD.format(k='h.lock_key')} OR {schema.LEASE_LEFT.format(h='h.')} > 0)"
        with self._errors("read"):
            self._settle()
            return self._q(
                f"SELECT stem, slot, record, {held} FROM {{s}}.holders h {where} "
                "ORDER BY stem, slot",
                *(() if stem is None else (stem,)),
            )

    def holders(self, key: JobKey, slots: int) -> list[Record]:
        rows = self._holder_rows(key.stem)
        return [
            r for _, slot, data, live in rows if live and slot < slots and (r := parse(bytes(data)))
        ]

    def inspect(self) -> list[KeyState]:
        states: dict[str, KeyState] = {}
        for stem, _, data, live in self._holder_rows():
            state = states.setdefault(stem, KeyState(stem, JobKey.from_stem(stem)))
            record = parse(bytes(data))
            if live and record is not None:
                state.holders.append(record)
            elif live:
                state.unrecorded += 1
            else:
                state.stale.append(record)
        held = schema.HELD.format(k="w.lock_key")
        with self._errors("read"):
            rows = self._q(f"SELECT stem, record FROM {{s}}.waiters w WHERE {held} ORDER BY seq")
        for stem, data in rows:
            state = states.setdefault(stem, KeyState(stem, JobKey.from_stem(stem)))
            if (record := parse(bytes(data))) is not None:
                state.waiters.append(record)
        for state in states.values():
            if state.key is None:
                known = next((r for r in (*state.holders, *state.waiters, *state.stale) if r), None)
                state.key = None if known is None else JobKey(known.group, known.name)
        return list(states.values())

    def _slot_of(self, record: Record) -> int | None:
        for _, slot, data, live in self._holder_rows(JobKey(record.group, record.name).stem):
            found = parse(bytes(data))
            if live and found is not None and found.job_id == record.job_id:
                return int(slot)
        return None

    def mark_stop(
        self, record: Record, reason: str, sig: int | None = None, kill_after: float = 10.0
    ) -> None:
        slot = self._slot_of(record)
        if slot is None:
            return
        request = StopRequest(reason, record.job_id, sig or 0, kill_after).encode()
        with self._errors("use"):
            self._q(
                "INSERT INTO {s}.stops VALUES (%s, %s, %s, %s) ON CONFLICT (stem, slot) "
                "DO UPDATE SET job_id = excluded.job_id, request = excluded.request",
                JobKey(record.group, record.name).stem, slot, record.job_id, request,
            )  # fmt: skip

    def stop_reason(self, lease: Lease) -> str | None:
        held: _Held = lease.handle
        with self._errors("read"):
            self._settle()
            rows = self._q(
                "DELETE FROM {s}.stops WHERE stem = %s AND slot = %s AND job_id = %s "
                "RETURNING request",
                lease.key.stem, lease.slot, held.job_id,
            )  # fmt: skip
        request = StopRequest.parse(rows[0][0]) if rows else None
        return None if request is None else request.reason

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        removed: list[Record | None] = []
        for stem, slot, data, live in self._holder_rows(state.stem):
            if live:
                continue
            lock = lock_key(self.schema, stem, slot)
            with self._errors("clean"):
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
            with self._errors("clean"):
                self._q(f"DELETE FROM {{s}}.waiters WHERE stem = %s AND NOT {held}", state.stem)
        return removed

    # -- history: a bounded table ---------------------------------------------------------------

    def add_runs(self, *runs: Run) -> None:
        from singlerun.history import journal_line

        with self._errors("write the run history to"):
            self._settle()
            for run in runs:
                rows = self._q(
                    "INSERT INTO {s}.runs (job_id, \"group\", name, started_at, line) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING RETURNING id",
                    run.job_id, run.group, run.name, run.started_at, journal_line(run),
                )  # fmt: skip
                if rows and rows[0][0] % _TRIM_EVERY == 0:
                    self._q("DELETE FROM {s}.runs WHERE id <= %s", rows[0][0] - HISTORY_LENGTH)

    def _lines(self, sql: str, *args: Any) -> list[Run]:
        from singlerun.history import parse_journal

        with self._errors("read the run history from"):
            rows = self._q(sql, *args)
        return [run for (line,) in rows for run in parse_journal(bytes(line))]

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        return self._lines(
            "SELECT line FROM {s}.runs WHERE (%s::text IS NULL OR \"group\" = %s) "
            "AND (%s::text IS NULL OR name = %s) ORDER BY started_at DESC, job_id DESC LIMIT %s",
            only.group, only.group, only.name, only.name, limit,
        )  # fmt: skip

    def last_runs(self) -> dict[tuple[str, str], Run]:
        runs = self._lines(
            'SELECT DISTINCT ON ("group", name) line FROM {s}.runs '
            'ORDER BY "group", name, started_at DESC'
        )
        return {(r.group, r.name): r for r in runs}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
