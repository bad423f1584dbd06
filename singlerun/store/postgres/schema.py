"""The tables singlerun keeps in its own schema, created on first use and versioned.

A newer singlerun that finds an older version runs the missing steps of MIGRATIONS, under
a transaction-scoped advisory lock so that two first runs do not race. The locks
themselves are session advisory locks and live in no table: these hold what people are
shown (holders, waiters, history) and the stop requests.
"""

from __future__ import annotations

VERSION = 3

# Made before any step: the one table every version has.
BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS {s}.version (version integer NOT NULL);
INSERT INTO {s}.version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {s}.version);
"""

# Step N brings a schema at version N-1 to version N. `{s}` is the quoted schema name.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE SEQUENCE {s}.fence;  -- fencing tokens: strictly increasing, durable
CREATE TABLE {s}.holders (
  stem text NOT NULL, slot integer NOT NULL,
  job_id text NOT NULL, fence bigint NOT NULL, record bytea NOT NULL,
  lock_key bigint NOT NULL,  -- the slot's advisory lock, held by the holder's session
  ttl double precision NOT NULL,  -- seconds: the holder's job dies by renewed_at + ttl
  renewed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (stem, slot));
CREATE TABLE {s}.waiters (
  stem text NOT NULL, job_id text NOT NULL, seq bigserial, record bytea NOT NULL,
  lock_key bigint NOT NULL,  -- the waiter's ticket lock: held means it still waits
  PRIMARY KEY (stem, job_id));
CREATE INDEX waiters_in_order ON {s}.waiters (stem, seq);
CREATE TABLE {s}.stops (
  stem text NOT NULL, slot integer NOT NULL, job_id text NOT NULL, request text NOT NULL,
  PRIMARY KEY (stem, slot));
CREATE TABLE {s}.runs (
  id bigserial PRIMARY KEY, job_id text NOT NULL UNIQUE,
  "group" text NOT NULL, name text NOT NULL, started_at double precision NOT NULL,
  line bytea NOT NULL);  -- the run as one journal line (history.journal_line)
CREATE INDEX runs_by_key ON {s}.runs ("group", name, started_at);
""",
    # When a waiter behind first saw this one's ticket lock free: its session may only have
    # dropped, and it keeps its place for queue.REJOIN seconds (store/outage.py).
    2: "ALTER TABLE {s}.waiters ADD COLUMN dead_since timestamptz;",
    # Runs whose lock was lost while their job runs on (adrift.py), for `status`.
    3: """
CREATE TABLE {s}.adrift (
  stem text NOT NULL, job_id text NOT NULL, record bytea NOT NULL,
  until timestamptz NOT NULL,  -- shown until then, unless its singlerun says so again
  PRIMARY KEY (stem, job_id));
""",
}

# pg_locks shows a bigint advisory key as its high half in classid, its low half in objid,
# with objsubid 1. HELD: some session holds the lock {k} exclusively (a waiter asking for it
# shared, to sleep until it frees, does not count). A lock table scan: never per renewal.
_LOCK = """EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
  AND l.objsubid = 1 AND l.classid::bigint = ({k} >> 32) & 4294967295
  AND l.objid::bigint = {k} & 4294967295 AND l.database = (SELECT oid FROM pg_database
  WHERE datname = current_database()) AND """
HELD = _LOCK + "l.mode = 'ExclusiveLock')"
# Seconds a holder row's lease has left. A session that dies (server restart, a cut, the
# server killing it) frees its lock at once, but its job runs until its singlerun notices
# or its watchdog fires, at the latest at the lease's end: until then the slot is taken.
LEASE_LEFT = (
    "GREATEST(0, EXTRACT(EPOCH FROM {h}renewed_at + {h}ttl * interval '1 second' "
    "- clock_timestamp()))"
)


def sized(column: str, records: int = 1) -> str:
    """A bytea column as read: a value longer than `records` times record.MAX_SIZE is no
    record or journal line singlerun wrote, and is read as empty (corrupt), so that one
    forged giant cannot make every reader allocate it."""
    from singlerun.record import MAX_SIZE

    most = records * MAX_SIZE
    return f"COALESCE(CASE WHEN octet_length({column}) <= {most} THEN {column} END, ''::bytea)"
