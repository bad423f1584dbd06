"""A PostgreSQL holder's renewal, against how many locks the whole server holds (issue 21).

The renewal used to check `pg_locks` for its own lock: an EXISTS over a view that
materialises every lock in the server, so its cost grew with the fleet, and one renewal per
job per second made a server's load grow as the square of its running jobs. A session that
can still answer holds its session locks, so the renewal now only moves its row's lease on.
Both statements are timed here, in turn, while another session holds 0 to 10,000
advisory locks. Goal: the renewal flat within 20 % from 0 to 10,000.
A PostgreSQL cluster of its own runs on a free loopback port (testbed/servers.py).
Usage: pg_renewal.py [ROUNDS] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.servers import PostgresServer

ROW = "UPDATE bench.holders SET renewed_at = clock_timestamp() WHERE stem = 'k' AND slot = 0"
# What the renewal was (singlerun before this change): the same, and its lock in pg_locks.
BEFORE = (
    ROW + " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.objsubid = 1 AND l.classid::bigint = (42::bigint >> 32) & 4294967295 "
    "AND l.objid::bigint = 42::bigint & 4294967295 AND l.database = (SELECT oid FROM "
    "pg_database WHERE datname = current_database()) AND l.pid = pg_backend_pid()) "
    "RETURNING true"
)
AFTER = ROW + " RETURNING true"  # store/postgres/store.py: PostgresStore.renew


def _ms(conn, sql: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        assert conn.execute(sql).fetchall() == [(True,)]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    import psycopg

    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(args[0]) if args else (20 if quick else 200)
    counts = [0, 1000] if quick else [0, 1000, 5000, 10000]
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="singlerun-bench-")))
    try:
        url = server.url("bench").split("?")[0]
        holder = psycopg.connect(url, autocommit=True)
        holder.execute("CREATE SCHEMA bench")
        holder.execute("CREATE TABLE bench.holders (stem text, slot int, renewed_at timestamptz)")
        holder.execute("INSERT INTO bench.holders VALUES ('k', 0, clock_timestamp())")
        holder.execute("SELECT pg_advisory_lock(42)")
        crowd = psycopg.connect(url, autocommit=True)
        for sql in (BEFORE, AFTER):  # warm the session and its caches: not a level's cost
            _ms(holder, sql, rounds)
        held = 0
        rows = []
        for n in counts:
            crowd.execute(
                "SELECT pg_advisory_lock(x) FROM generate_series(%s::bigint, %s::bigint) x",
                (held + 100, n + 99),
            )
            held = n
            # Each level starts from the same table: every renewal leaves a dead row
            # version behind, and their number, not the locks, would set the next level's.
            holder.execute("VACUUM bench.holders")
            samples: dict[str, list[float]] = {BEFORE: [], AFTER: []}
            for _ in range(3):  # the two statements in turn
                for sql, found in samples.items():
                    found.append(_ms(holder, sql, rounds))
            rows.append((n, statistics.median(samples[BEFORE]), statistics.median(samples[AFTER])))
        base = rows[0][2]
        print("| advisory locks held in the server | before: renewal with pg_locks (ms) | "
              "after: renewal (ms) | after ÷ after at 0 |")  # fmt: skip
        print("| ---: | ---: | ---: | ---: |")
        for n, before, after in rows:
            print(f"| {n:,} | {before:.3f} | {after:.3f} | {after / base:.2f} |")
        print(f"\nmedian of 3 × {rounds} renewals each, one session, loopback")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
