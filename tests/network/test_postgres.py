"""What is PostgreSQL's own: the session that holds the lock killed by the server, roles
and privileges, the versioned schema, the bounded history, the durable fencing sequence,
and libpq URLs."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from testbed.servers import free_port
from tests.conftest import wait_for

JOB = ["sh", "-c", "echo ready; sleep 30"]


def _holder(rr, name, *extra):
    proc = rr.start("-n", name, *extra, "--", *JOB)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_the_holders_session_killed_by_the_server_stops_the_job(rr, postgres_server):
    proc = _holder(rr, "term", "--lease-ttl", "3s")
    t0 = time.monotonic()
    killed = postgres_server.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'singlerun' AND pid <> pg_backend_pid()"
    )
    assert killed
    assert proc.wait(10) == 125
    assert time.monotonic() - t0 < 3  # noticed at the next probe, within a second or so
    # Issue 19.5: one event, one line (a warning about reading from the dead session came
    # first). Issue 19.6: the row says what its singlerun knew (125), not `? exit - lost`.
    err = proc.stderr.read()
    assert err.count("\n") == 1 and "was lost; job " in err, err
    (row,) = json.loads(rr.run("history", "--json", "-n", "term").stdout)
    assert (row["outcome"], row["exit_status"]) == ("lost", 125)
    assert row["ended_at"] is not None
    # The dead session's lease is waited out, then the key is free again.
    wait_for(lambda: rr.run("-n", "term", "-q", "--", "true").returncode == 0, what="free")


def test_a_role_without_rights_gets_one_line_and_125(rr, postgres_server, ns):
    role = f"r{ns}"
    postgres_server.sql(f"CREATE ROLE {role} LOGIN")
    try:
        url = f"postgresql://{role}@127.0.0.1:{postgres_server.port}/postgres?schema={ns}"
        r = rr.run("-n", "k", "--", "true", env={"SINGLERUN_BACKEND": url})
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        assert f"cannot create schema {ns}" in r.stderr
        assert f"CREATE SCHEMA {ns} AUTHORIZATION" in r.stderr
        # Only CONNECT and its own schema: enough.
        postgres_server.sql(f"CREATE SCHEMA {ns} AUTHORIZATION {role}")
        r = rr.run("-n", "k", "--", "echo", "ran", env={"SINGLERUN_BACKEND": url})
        assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
        # Without CONNECT on the database: refused at the door.
        postgres_server.sql(f"REVOKE CONNECT ON DATABASE postgres FROM PUBLIC, {role}")
        r = rr.run("-n", "k", "--", "true", env={"SINGLERUN_BACKEND": url})
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        assert (
            r.stderr.startswith("singlerun: cannot reach postgresql://")
            and "permission" in r.stderr
        )
    finally:
        postgres_server.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC")
        postgres_server.sql(f"DROP SCHEMA IF EXISTS {ns} CASCADE")
        postgres_server.sql(f"DROP ROLE {role}")


def test_an_older_schema_is_migrated_and_a_newer_one_refused(rr, postgres_server, ns):
    postgres_server.sql(f"CREATE SCHEMA {ns}")
    postgres_server.sql(f"CREATE TABLE {ns}.version (version integer NOT NULL)")
    postgres_server.sql(f"INSERT INTO {ns}.version VALUES (0)")  # before the first tables
    r = rr.run("-n", "k", "--", "true")
    assert r.returncode == 0, r.stderr
    assert postgres_server.sql(f"SELECT version FROM {ns}.version") == [(3,)]
    assert postgres_server.sql(f"SELECT count(*) FROM {ns}.runs") == [(1,)]
    # Version 1 to 3 (the waiters' dead_since, issue 19.2; runs adrift, 19.3) on a schema
    # in use.
    postgres_server.sql(f"ALTER TABLE {ns}.waiters DROP COLUMN dead_since")
    postgres_server.sql(f"DROP TABLE {ns}.adrift")
    postgres_server.sql(f"UPDATE {ns}.version SET version = 1")
    assert rr.run("-n", "k", "--", "true").returncode == 0
    assert postgres_server.sql(f"SELECT version FROM {ns}.version") == [(3,)]
    assert postgres_server.sql(f"SELECT count(*) FROM {ns}.adrift") == [(0,)]
    assert postgres_server.sql(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'waiters' AND column_name = 'dead_since'",
        ns,
    ) == [(1,)]
    postgres_server.sql(f"UPDATE {ns}.version SET version = 99")
    r = rr.run("-n", "k", "--", "true")
    assert r.returncode == 125 and "newer than this singlerun knows" in r.stderr


@pytest.mark.parametrize("size", [None, "200"])
def test_the_history_keeps_a_bounded_number_of_runs(rr, postgres_server, ns, size):
    keep = int(size or 10_000)
    assert rr.run("-n", "k", "--", "true").returncode == 0  # creates the schema
    line = b'["J","g","n","h",1,1.0,2.0,0,"ok","[]",1,"J"]\n'
    postgres_server.sql(
        f'INSERT INTO {ns}.runs (job_id, "group", name, started_at, line) '
        "SELECT 'old' || i, 'g', 'n', i, %s FROM generate_series(2, %s) i",
        line,
        keep + 99,
    )
    env = {"SINGLERUN_HISTORY_SIZE": size} if size else {}
    assert rr.run("-n", "k", "--", "true", env=env).returncode == 0  # run keep + 100: a trim
    (count,) = postgres_server.sql(f"SELECT count(*) FROM {ns}.runs")[0]
    assert count == keep
    r = rr.run("history", "--json", "-n", "k")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["outcome"] == "ok"


def test_fencing_tokens_come_from_a_durable_sequence(rr, postgres_server):
    token = ["sh", "-c", "echo $SINGLERUN_FENCING_TOKEN"]
    before = int(rr.run("-n", "f", "--", *token).stdout)
    postgres_server.restart()  # a crash: every session gone, the data kept
    after = int(rr.run("-n", "f", "--", *token).stdout)
    assert after > before


def test_urls_passwords_and_unreachable_servers(rr, postgres_server, ns):
    here = f"postgresql://127.0.0.1:{postgres_server.port}/postgres"
    bad = ["postgresql://h:notaport/db", f"{here}?schema=Bad-Name", f"{here}?nosuch=1"]
    # Issue 18: libpq's own checks were 125; connect_timeout=0 waited forever; a schema
    # that holds someone else's tables (public.version) was migrated into.
    bad += [f"{here}?sslmode=bogus", f"{here}?port=abc", f"{here}?target_session_attrs=bogus"]
    bad += [f"{here}?connect_timeout=0", f"{here}?schema=public", f"{here}?schema=pg_x"]
    for url in bad:
        r = rr.run("-n", "k", "--", "true", env={"SINGLERUN_BACKEND": url})
        assert r.returncode == 2 and r.stderr.startswith("singlerun: invalid --backend URL"), (
            url,
            r.stderr,
        )
        assert r.stderr.count("\n") == 1
    # Issue 18: libpq quotes a bad %-escape, which may be in the password.
    r = rr.run("status", env={"SINGLERUN_BACKEND": "postgresql://u:pa%ss@127.0.0.1:1/db"})
    assert r.returncode == 2 and "pa%ss" not in r.stderr and "%25" in r.stderr, r.stderr
    secret = "s3cret-pw"
    port = free_port()  # nobody listens there
    url = f"postgresql://postgres:{secret}@127.0.0.1:{port}/postgres?connect_timeout=2"
    t0 = time.monotonic()
    r = rr.run("-n", "k", "-v", "--", "true", env={"SINGLERUN_BACKEND": url})
    assert r.returncode == 125 and time.monotonic() - t0 < 10
    assert r.stderr.startswith(f"singlerun: cannot reach postgresql://postgres@127.0.0.1:{port}/")
    assert secret not in r.stderr + r.stdout
    # Through a server that ignores it (trust): never in messages, status or records.
    url = f"postgresql://postgres:{secret}@127.0.0.1:{postgres_server.port}/postgres?schema={ns}"
    env = {"SINGLERUN_BACKEND": url}
    holder = rr.start("-n", "pw", "-v", "--", *JOB, env=env)
    assert holder.stdout.readline().strip() == "ready"
    for args in (("status",), ("status", "--json"), ("-n", "pw", "--", "true")):
        r = rr.run(*args, env=env)
        assert secret not in r.stdout + r.stderr, args
    rows = postgres_server.sql(f"SELECT record FROM {ns}.holders")
    assert rows and all(secret.encode() not in bytes(rec) for (rec,) in rows)
    holder.terminate()
    _, err = holder.communicate(timeout=10)
    assert secret not in err


@pytest.mark.parametrize("slots", [1, 3])
def test_waiters_are_woken_at_once_without_polling(rr, slots):
    """Handoff: a waiter sleeps in the server's lock queue (one slot) or on a NOTIFY."""
    conc = ("--max-concurrent", str(slots))
    holders = [_holder(rr, "h", *conc) for _ in range(slots)]
    waiter = rr.start("-n", "h", *conc, "--wait", "--", "true")
    wait_for(lambda: json.loads(rr.run("status", "--json", "-n", "h").stdout)[0]["waiters"],
             what="queued")  # fmt: skip
    time.sleep(0.3)
    t0 = time.monotonic()
    holders[0].terminate()
    assert waiter.wait(10) == 0
    assert time.monotonic() - t0 < 0.9  # well under the 1 s fallback check
    for h in holders:
        h.terminate()
        h.wait(10)


def test_a_sql_ascii_database_works(rr, postgres_server, ns):
    """Issue 19: initdb under LC_ALL=C makes SQL_ASCII databases, whose text psycopg hands
    over as bytes; `status` of a held key was an internal error there."""
    db = f"ascii_{ns}"
    postgres_server.sql(
        f"CREATE DATABASE {db} WITH ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0"
    )
    url = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{db}?schema={ns}"
    env = {"SINGLERUN_BACKEND": url}
    holder = rr.start("-n", "é", "--", *JOB, env=env)
    try:
        assert holder.stdout.readline().strip() == "ready"
        waiter = rr.start("-n", "é", "--wait", "--", "true", env=env)

        def queued() -> bool:
            entries = json.loads(rr.run("status", "--json", env=env).stdout)
            return bool(entries and entries[0]["waiters"])

        wait_for(queued, what="queued")
        for args in (("status",), ("status", "--json"), ("metrics",), ("history", "--json")):
            r = rr.run(*args, env=env)
            assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        (entry,) = json.loads(rr.run("status", "--json", env=env).stdout)
        assert (entry["name"], entry["state"]) == ("é", "running")
    finally:
        holder.terminate()
        holder.wait(10)
    assert waiter.wait(10) == 0


def test_libpq_urls_as_libpq_reads_them(rr, postgres_server, ns):
    """Issue 24.1: the URL was re-encoded by our parser: the socket form lost its `//`,
    several hosts were refused, and `options=-c%20x%3Dy` reached libpq as `-c+x=y`."""
    pg, dead = postgres_server, free_port()
    forms = {
        "socket": f"postgresql:///postgres?host={pg.workdir}&port={pg.port}&user=postgres",
        "hosts": f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{pg.port}/postgres"
        "?target_session_attrs=read-write",
        "options": f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        "?options=-c%20statement_timeout%3D5000%20-c%20lock_timeout%3D0",
    }
    for form, url in forms.items():
        r = rr.run("--backend", f"{url}&schema={ns}", "-n", form, "--", "echo", form)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{form}\n", ""), (form, r.stderr)
    r = rr.run("--backend", f"{forms['socket']}&schema={ns}", "history", "--json")
    assert {row["name"] for row in json.loads(r.stdout)} == set(forms)


def test_a_query_without_a_whole_reply_in_time_closes_the_session(postgres_server, ns):
    """Issue 18.6: a server that stops answering mid-session (paused, or trickling) held a
    query without limit; now every query but a lock wait has a whole-reply deadline."""
    from singlerun.store.postgres.session import Session
    from singlerun.store.postgres.url import parse
    from tests.network.fixtures import start

    session = Session(parse(start(postgres_server).url(ns)), ttl=3.0)
    assert session.q("SELECT 1") == [(1,)]
    postgres_server.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(session.psycopg.OperationalError, match="no whole reply within 5s"):
            session.q("SELECT 2")
        assert 4.5 < time.monotonic() - t0 < 8
        assert session.broken()  # closed: a waiter reconnects, a holder counts it lost
    finally:
        postgres_server.resume()


def test_a_lock_over_a_connection_neither_local_nor_verified_warns(rr, postgres_server, ns):
    """Issue 18.4: without sslmode, libpq's `prefer` accepts clear text and any certificate.
    A run says so once (a name not on this host, reached here through hostaddr)."""
    base = f"postgresql://postgres@db.invalid:{postgres_server.port}/postgres"
    url = f"{base}?hostaddr=127.0.0.1&schema={ns}"
    r = rr.run("-n", "k", "--", "true", env={"SINGLERUN_BACKEND": url})
    assert r.returncode == 0, r.stderr
    assert r.stderr == (
        "singlerun: warning: default/k: postgresql://postgres@db.invalid:"
        f"{postgres_server.port}/postgres?schema={ns} is neither local nor TLS-verified "
        "(sslmode=prefer): anyone on the way can read or forge the lock traffic; write "
        "sslmode=verify-full (or sslmode=disable to accept that)\n"
    )
    for quiet in (f"{url}&sslmode=disable", postgres_server.url(ns)):
        r = rr.run("-n", "k", "--", "true", env={"SINGLERUN_BACKEND": quiet})
        assert (r.returncode, r.stderr) == (0, ""), quiet
    r = rr.run("-q", "-n", "k", "--", "true", env={"SINGLERUN_BACKEND": url})
    assert (r.returncode, r.stderr) == (0, "")


def test_a_full_server_is_one_line_for_a_run_and_a_wait_for_a_waiter(tmp_path):
    """Issue 21: at max_connections, waiters exited 125 (`too many clients already`). A run
    without --wait still does, with a line that says the server is full; a waiter waits for
    a connection within its --wait-timeout (then 75), and runs once one frees."""
    import tempfile

    import psycopg

    from testbed.servers import PostgresServer
    from tests.conftest import Singlerun

    full = "-c max_connections=4 -c superuser_reserved_connections=1"
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="singlerun-pg-")), full)
    try:
        server.sql("CREATE ROLE fleet LOGIN")
        server.sql("GRANT CREATE ON DATABASE postgres TO fleet")
        url = f"postgresql://fleet@127.0.0.1:{server.port}/postgres"
        sr = Singlerun(tmp_path)  # its lock directory: unused, the store is the server
        sr.env["SINGLERUN_BACKEND"] = url
        taken = [psycopg.connect(url) for _ in range(3)]  # every slot but the superuser's
        r = sr.run("-n", "a", "--", "true")
        assert r.returncode == 125
        full_line = f"singlerun: cannot reach {url}: no connection free (max_connections): "
        assert r.stderr.startswith(full_line + "remaining connection slots"), r.stderr
        t0 = time.monotonic()
        r = sr.run("-n", "a", "--wait-timeout", "2s", "--", "true")
        assert (r.returncode, r.stderr) == (75, "singlerun: gave up waiting for default/a\n")
        assert 1.9 < time.monotonic() - t0 < 10
        waiter = sr.start("-n", "a", "--wait", "--", "echo", "ran")
        wait_for(lambda: len(server.sql("SELECT 1 FROM pg_stat_activity WHERE "
                                        "usename = 'fleet'")) == 3)  # fmt: skip
        with pytest.raises(subprocess.TimeoutExpired):  # refused a few times, and waits on
            waiter.wait(0.5)
        taken.pop().close()
        assert waiter.wait(20) == 0, waiter.stderr.read()
        assert waiter.stdout.read() == "ran\n"
        for conn in taken:
            conn.close()
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def test_a_holder_renews_every_third_of_its_ttl_and_still_hears_a_stop_at_once(
    rr, postgres_server, ns
):
    """Issue 21: one renewal per job per second made 1,000 running jobs cost a 2-core server
    a third of a core. A holder now renews every third of its TTL and hears of a stop
    request by a notification, so a stop is as prompt as when it polled."""
    holder = rr.start("-n", "r", "--lease-ttl", "30s", "--", "sh", "-c", "echo up; sleep 60")
    assert holder.stdout.readline() == "up\n"
    renewed = f"SELECT renewed_at FROM {ns}.holders WHERE stem = 'default.r'"
    first = postgres_server.sql(renewed)
    time.sleep(3)  # three ticks: each used to be a renewal
    assert postgres_server.sql(renewed) == first
    t0 = time.monotonic()
    r = rr.run("stop", "-n", "r", "--timeout", "20s")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert holder.wait(10) == 143
    assert took < 5, took  # a renewal would have come 10 s after the grant at the latest
