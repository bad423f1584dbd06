"""singlerun's one PostgreSQL session: its connection (keepalives both ways), queries with
one-line errors, the schema made or migrated on first use, and a query that can be sent
now and collected later (the lease probe), so that a black-holed server never stalls the
supervisor. Advisory locks belong to this session and die with it."""

from __future__ import annotations

import contextlib
import hashlib
import select
import time
from typing import Any

from singlerun.errors import Dropped, StoreError, UsageError
from singlerun.store.base import client, failing_as, first_line
from singlerun.store.postgres import schema
from singlerun.store.postgres.url import PostgresURL


def lock_key(*parts: str | int) -> int:
    """A stable signed 64-bit advisory lock key."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# What a server says when it has no connection for us (SQLSTATE 53300, which libpq does not
# pass on for a refused connection): a full server, not a wrong one.
_FULL = (
    "too many clients already",
    "remaining connection slots are reserved",
    "too many connections for role",
    "too many connections for database",
)


class _Late(Exception):
    """The server's reply did not come whole in time."""


class Session:
    def __init__(self, url: PostgresURL, ttl: float) -> None:
        self.psycopg: Any = client("psycopg", "PostgreSQL", "psycopg", "postgres")
        psycopg = self.psycopg
        self.location = url.location
        self.schema = url.schema
        self.ttl = ttl
        self.reply_deadline = max(5.0, ttl / 3)  # seconds for a query's whole answer
        self._probe_sent: float | None = None  # a probe awaiting its answer, sent then
        self._heard: set[str] = set()  # channels notified, not yet asked about (heard())
        # Keepalives (and an unacknowledged-send limit) well inside the TTL, both ways: we
        # notice a dead server, and the server drops a dead client's session and its locks.
        beat = max(1, int(ttl / 3))
        try:
            self.conn: Any = psycopg.connect(
                url.conninfo,
                autocommit=True,
                application_name="singlerun",
                # Text as text on every server: a SQL_ASCII one (initdb under LC_ALL=C)
                # would otherwise hand psycopg its text columns as bytes.
                client_encoding="UTF8",
                keepalives=1,
                keepalives_idle=beat,
                keepalives_interval=beat,
                keepalives_count=3,
                tcp_user_timeout=int(ttl * 1000),
            )
        except psycopg.ProgrammingError as exc:  # libpq rejected the URL's parameters
            why = first_line(exc)
            if why.startswith("invalid percent-encoded token"):  # it quotes the token: a
                why = "a % not followed by two hex digits (write % as %25)"  # password, perhaps
            raise UsageError(f"invalid --backend URL: {why}") from None
        except psycopg.Error as exc:
            why = first_line(exc)
            # libpq checks option values (sslmode, port, target_session_attrs) before it
            # connects; a bad one is the URL's fault, not the server's.
            if why.startswith("connection is bad: invalid "):
                raise UsageError(f"invalid --backend URL: {why.split(': ', 1)[1]}") from None
            if any(full in why for full in _FULL):  # a waiter tries again (taking.open_for)
                why = f"no connection free (max_connections): {why.rsplit('FATAL:', 1)[-1].strip()}"
                raise Dropped(f"cannot reach {self.location}: {why}", self.location) from None
            raise StoreError(f"cannot reach {self.location}: {why}") from None
        with self.errors("use"):
            for setting in ("tcp_keepalives_idle", "tcp_keepalives_interval"):
                self.q(f"SET {setting} = {beat}")
            # A waiter blocked in the server's lock queue runs a query, and a server does
            # not read a running query's socket: without this, a killed waiter's session
            # (its place in the queue) would outlive it until the lock came (PostgreSQL 14+).
            with contextlib.suppress(psycopg.errors.UndefinedObject):
                self.q("SET client_connection_check_interval = 1000")
            self._prepare_schema()

    def exposure(self) -> str:
        """Why the lock traffic is readable and forgeable on the way, if it is: a server
        neither local (a Unix socket, a loopback name) nor reached with a verified
        certificate, unless the URL said sslmode=disable (a choice, not libpq's default)."""
        import ipaddress

        host = self.conn.info.host
        options = {o.keyword: o.val for o in self.conn.pgconn.info}
        mode = (options.get(b"sslmode") or b"prefer").decode()
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if host.startswith("/") or loopback or mode in ("verify-ca", "verify-full", "disable"):
            return ""
        return (
            f"{self.location} is neither local nor TLS-verified (sslmode={mode}): anyone on "
            "the way can read or forge the lock traffic; write sslmode=verify-full (or "
            "sslmode=disable to accept that)"
        )

    def errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """psycopg's errors as one StoreError line; lock_timeout passes through."""
        passing = (self.psycopg.errors.LockNotAvailable,)
        return failing_as(self.location, action, self.psycopg.Error, passing)

    def sql(self, text: str) -> str:
        """`{s}` in `text` becomes the quoted schema."""
        return text.replace("{s}", f'"{self.schema}"')

    def q(self, text: str, *args: Any, blocking: bool = False) -> list[tuple[Any, ...]]:
        """Rows of a query, whole within `reply_deadline` (a server is not trusted to answer
        at all, issue 18.6) unless it is `blocking`: a lock wait, bounded by lock_timeout.
        Past the deadline the connection is closed, mid-reply as it is."""
        self.settle()
        if blocking:
            cur = self.conn.execute(self.sql(text), args or None)
            return cur.fetchall() if cur.description else []
        from singlerun.store.alarm import alarm_at

        try:
            with alarm_at(time.monotonic() + self.reply_deadline, _Late):
                cur = self.conn.execute(self.sql(text), args or None)
                return cur.fetchall() if cur.description else []
        except _Late:
            self.close()
            raise self.psycopg.OperationalError(
                f"no whole reply within {self.reply_deadline:g}s"
            ) from None

    def broken(self) -> bool:
        """Whether the server ended the session (terminated, restarted) or it was closed."""
        return bool(self.conn.closed or self.conn.pgconn.status != self.psycopg.pq.ConnStatus.OK)

    def idle(self) -> bool:
        """Whether the connection can take a query (not broken, not inside one)."""
        return bool(self.conn.pgconn.transaction_status == self.psycopg.pq.TransactionStatus.IDLE)

    def _prepare_schema(self) -> None:
        errors = self.psycopg.errors
        try:
            (version,) = self.q("SELECT version FROM {s}.version")[0]
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
            self.q("SELECT pg_advisory_xact_lock(%s)", lock_key(self.schema, "schema"))
            if not self.q("SELECT 1 FROM pg_namespace WHERE nspname = %s", self.schema):
                try:
                    self.q("CREATE SCHEMA {s}")
                except errors.InsufficientPrivilege:
                    raise StoreError(
                        f"cannot create schema {self.schema} in {self.location}: permission "
                        f"denied (an administrator can: CREATE SCHEMA {self.schema} "
                        "AUTHORIZATION <role>)"
                    ) from None
            self.q(schema.BOOTSTRAP)
            (current,) = self.q("SELECT version FROM {s}.version")[0]
            for step in range(current + 1, schema.VERSION + 1):
                self.q(schema.MIGRATIONS[step])
                self.q("UPDATE {s}.version SET version = %s", step)

    # -- what the server sends unasked, and a query answered later ----------------------------

    def listen(self, channel: str) -> None:
        """LISTEN to `channel`, for heard(): also while other queries run."""
        self.q(f'LISTEN "{channel}"')
        self.conn.add_notify_handler(lambda n: self._heard.add(n.channel))

    def heard(self, channel: str) -> bool:
        """Whether `channel` was notified since the last ask, from what the server has
        already sent: no round trip. Raises OperationalError if the session ended (the
        server closed it, or the connection broke)."""
        self._take_in(0)
        found = channel in self._heard
        self._heard.discard(channel)
        return found

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` unless the session ends first (then OperationalError at once):
        a lock taken on it is ours only while it lives, so a waiter that sleeps out a lease
        holding its slot must come back (reconnect, keep its place) the moment it drops,
        not after the lease (the waiter behind would pass it meanwhile)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._take_in(left)

    def _take_in(self, timeout: float) -> None:
        """Read what the server sent unasked, waiting up to `timeout` for it: notifications
        (kept for `heard`), the end of the session (OperationalError)."""
        pg, pq = self.conn.pgconn, self.psycopg.pq
        if pg.status != pq.ConnStatus.OK:
            raise self.psycopg.OperationalError("the connection is closed")
        if select.select([pg.socket], [], [], timeout)[0]:
            pg.consume_input()  # raises at the end of the stream
        while (n := pg.notifies()) is not None:
            self._heard.add(n.relname.decode(errors="replace"))

    @property
    def probing(self) -> bool:
        """A probe is out, not yet answered."""
        return self._probe_sent is not None

    def probe(self, text: str, args: list[str]) -> tuple[Any, float] | None:
        """Send `text` (once; $N parameters) unless a probe is already out, and return its
        result and when it was sent if the answer is there; None if it is not yet.
        Raises OperationalError if the connection is broken."""
        pg = self.conn.pgconn
        pq = self.psycopg.pq
        if self._probe_sent is None:
            if pg.status != pq.ConnStatus.OK:
                raise self.psycopg.OperationalError("the connection is closed")
            pg.send_query_params(self.sql(text).encode(), [a.encode() for a in args])
            self._probe_sent = time.monotonic()
            while pg.flush():
                select.select([], [pg.socket], [], 0.1)
        sent = self._probe_sent
        select.select([pg.socket], [], [], 0.05)  # usually answered within a tick
        pg.consume_input()
        if pg.is_busy():
            return None
        result = pg.get_result()
        while pg.get_result() is not None:
            pass
        self._probe_sent = None
        return result, sent

    def settle(self) -> None:
        """Collect a probe still out before the connection is used for anything else."""
        if self._probe_sent is None:
            return
        pg = self.conn.pgconn
        deadline = time.monotonic() + max(1.0, self.ttl)
        while pg.is_busy():
            if time.monotonic() > deadline:
                raise self.psycopg.OperationalError("the server stopped answering")
            select.select([pg.socket], [], [], 0.1)
            pg.consume_input()
        while pg.get_result() is not None:
            pass
        self._probe_sent = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
