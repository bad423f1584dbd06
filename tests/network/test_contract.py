"""The rest of the contract on Redis: slots, waiting, time limits, clean, bad set-ups."""

import json
import signal
import time

from tests.conftest import stop, wait_for


def test_max_concurrent_slots(rr):
    holders = [rr.start_holder("-n", "m", "--max-concurrent", "2")[0] for _ in range(2)]
    assert rr.run("-n", "m", "--max-concurrent", "2", "--", "true").returncode == 75
    (entry,) = json.loads(rr.run("status", "--json", "-n", "m").stdout)
    assert len(entry["holders"]) == 2
    waiter = rr.start("-n", "m", "--max-concurrent", "2", "--wait", "--", "echo", "in")
    wait_for(
        lambda: json.loads(rr.run("status", "--json", "-n", "m").stdout)[0]["waiters"], what="q"
    )
    stop(holders[0])
    assert waiter.wait(10) == 0 and waiter.stdout.read() == "in\n"
    stop(holders[1])


def test_wait_timeout_and_a_signal_while_waiting(rr):
    holder, _ = rr.start_holder("-n", "w")
    t0 = time.monotonic()
    r = rr.run("-n", "w", "--wait-timeout", "1s", "--", "true")
    assert r.returncode == 75 and r.stderr.startswith("singlerun: gave up waiting for default/w")
    assert 0.9 < time.monotonic() - t0 < 6
    waiter = rr.start("-n", "w", "--wait", "--", "true")
    wait_for(
        lambda: json.loads(rr.run("status", "--json", "-n", "w").stdout)[0]["waiters"], what="q"
    )
    waiter.send_signal(signal.SIGTERM)
    assert waiter.wait(10) == 128 + signal.SIGTERM
    # PostgreSQL ends the waiter's session (and its ticket lock) a moment after it closed it.
    wait_for(
        lambda: not json.loads(rr.run("status", "--json", "-n", "w").stdout)[0]["waiters"],
        timeout=5,
        what="the waiter gone from the queue",
    )
    stop(holder)


def test_max_runtime_on_redis(rr):
    r = rr.run("-n", "t", "--max-runtime", "1s", "--kill-after", "1s", "--", "sleep", "30")
    assert r.returncode == 124
    assert json.loads(rr.run("history", "--json", "-n", "t").stdout)[0]["outcome"] == "timeout"


def test_stale_lease_is_reported_reclaimed_and_cleaned(rr, redis_server, prefix):
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


def test_status_shows_recent_keys_and_clean_forgets_idle_ones(rr):
    from tests.idle_keys import check_idle_keys

    check_idle_keys(rr)


def test_check_metrics_and_the_summary(rr, tmp_path):
    from tests.monitoring import check_monitoring

    textfile = tmp_path / "textfile"
    textfile.mkdir()
    check_monitoring(rr, textfile)
