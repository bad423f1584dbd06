"""What only the network stores do (both servers): a lease that expires is stale, reclaimed
and cleaned; a missing client library; --lease-ttl's range; a fencing token per attempt.
What every store does alike is tests/contract."""

import json
import signal
import time

import psutil

from tests.conftest import wait_for


def test_stale_lease_is_reported_reclaimed_and_cleaned(rr):
    holder = rr.start("-n", "z", "--lease-ttl", "1s", "--", "sleep", "30")
    wait_for(
        lambda: json.loads(rr.run("status", "--json", "-n", "z").stdout)[0]["state"] == "running",
        what="r",
    )
    holder.kill()  # the watchdog kills the job; nobody releases the lease: it expires
    holder.wait()
    wait_for(lambda: rr.run("status", "-n", "z").returncode == 1, what="stale", timeout=5)
    r = rr.run("clean", "--dry-run")
    assert r.returncode == 0 and "would remove stale record of default/z: job " in r.stdout
    r = rr.run("-n", "z", "--", "true")
    assert r.returncode == 0 and "reclaimed a stale lock: job " in r.stderr
    assert r.stderr.endswith(") let its lease expire\n"), r.stderr  # not "is gone": unknown
    outcomes = [row["outcome"] for row in json.loads(rr.run("history", "--json", "-n", "z").stdout)]
    assert sorted(outcomes) == ["lost", "ok"]


def test_a_frozen_runs_own_history_row_wins_over_its_reclaimers_guess(rr, server):
    """Issue 19.6: a run whose lease expired while its singlerun was frozen is reclaimed by
    the next run, which writes the guess `lost, end unknown`; the frozen singlerun then
    comes back and knows how its run ended. Before, Redis kept both rows (one job shown
    twice) and PostgreSQL only the guess."""
    # The job freezes its own singlerun and ends at once: nobody renews or releases.
    a = rr.start("-n", "g", "--lease-ttl", "1s", "--", "sh", "-c", "kill -STOP $PPID")
    wait_for(lambda: psutil.Process(a.pid).status() == psutil.STATUS_STOPPED, what="frozen")
    try:
        if server.kind == "postgres":  # the frozen session would keep its lock for ever
            server.drop_clients()
        b = rr.run("-n", "g", "--wait", "--wait-timeout", "20s", "--", "true")
        assert b.returncode == 0 and "reclaimed a stale lock: job " in b.stderr, b
    finally:
        a.send_signal(signal.SIGCONT)
    code = a.wait(10)
    rows = json.loads(rr.run("history", "--json", "-n", "g").stdout)
    mine = [r for r in rows if r["pid"] == a.pid]
    assert len(rows) == 2 and len(mine) == 1, rows
    assert mine[0]["ended_at"] is not None and mine[0]["exit_status"] == code, (code, mine)


def test_clean_removes_a_stale_record(rr):
    holder = rr.start("-n", "c", "--lease-ttl", "1s", "--", "sleep", "30")
    wait_for(lambda: rr.run("status", "-n", "c").returncode == 0, what="running")
    holder.kill()
    holder.wait()
    wait_for(lambda: rr.run("status", "-n", "c").returncode == 1, what="stale", timeout=5)
    r = rr.run("clean")
    assert r.returncode == 0 and "removed stale record of default/c" in r.stdout
    assert rr.run("status", "-n", "c").returncode == 3


def test_without_the_client_library_one_line_and_125(rr, backend, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    module = {"redis": "redis", "postgres": "psycopg"}[backend]
    (fake / f"{module}.py").write_text("raise ImportError('not here')\n")
    env = {"PYTHONPATH": str(fake)}
    r = rr.run("-n", "x", "--", "true", env=env)
    assert r.returncode == 125
    needs = {
        "redis": "the Redis backend needs redis-py: pip install 'singlerun[redis]'",
        "postgres": "the PostgreSQL backend needs psycopg: pip install 'singlerun[postgres]'",
    }
    assert r.stderr == f"singlerun: {needs[backend]}\n"


def test_lease_ttl_range_is_checked(rr):
    for bad in ("0", "500ms", "2d", "x"):
        r = rr.run("-n", "x", "--lease-ttl", bad, "--", "true")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (bad, r.stderr)


def test_retry_gets_a_new_fencing_token_per_attempt_and_keeps_the_lease(rr):
    job = "echo $SINGLERUN_FENCING_TOKEN; exit 1"
    runner = rr.start("-n", "rt", "--retry", "2", "--retry-delay", "1500ms", "--lease-ttl", "1s",
                      "--", "sh", "-c", job)  # fmt: skip
    # In the delay (longer than the TTL): the lease is kept, so the key stays taken.
    wait_for(
        lambda: json.loads(rr.run("status", "--json", "-n", "rt").stdout)[0]["next_attempt_at"],
        what="delay",
    )
    time.sleep(1.2)
    assert rr.run("-n", "rt", "--", "true").returncode == 75
    assert runner.wait(20) == 1
    tokens = [int(t) for t in runner.stdout.read().split()]
    assert len(tokens) == 3 and tokens == sorted(set(tokens))
