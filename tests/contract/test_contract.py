"""What every store does alike (docs/CONTRACT.md §3, §5): the conflict, --wait and its FIFO
queue, --wait-timeout, --max-concurrent, --max-runtime, idle keys and monitoring."""

import json
import re
import signal
import time

from tests.conftest import Singlerun, stop, wait_for


def _waiters(st: Singlerun, name: str) -> int:
    r = st.run("status", "--json", "-n", name)
    entries = json.loads(r.stdout) if r.returncode == 0 else []
    return len(entries[0]["waiters"]) if entries else 0


def test_second_instance_conflicts_fast_without_running(st, tmp_path):
    holder, _ = st.start_holder("-n", "nightly", "-g", "backups")
    marker = tmp_path / "ran"
    t0 = time.monotonic()
    r = st.run("-n", "nightly", "-g", "backups", "--", "touch", str(marker))
    elapsed = time.monotonic() - t0
    assert r.returncode == 75
    assert elapsed < 2.0  # generous sanity bound; the figure is measured in benchmarks/
    assert not marker.exists()
    assert re.fullmatch(
        r"singlerun: backups/nightly is already running "
        rf"\(job [0-9A-Z]{{26}}, pid {holder.pid}, started \d+s ago\)\n",
        r.stderr,
    ), r.stderr
    assert stop(holder) == 0


def test_conflict_exit_code(st):
    holder, _ = st.start_holder("-n", "k")
    assert st.run("-n", "k", "--conflict-exit-code", "0", "--", "true").returncode == 0
    assert st.run("-n", "k", "--conflict-exit-code", "3", "--", "true").returncode == 3
    stop(holder)


def test_other_keys_run_concurrently(st):
    holder, _ = st.start_holder("-n", "k", "-g", "g1")
    assert st.run("-n", "k", "-g", "g2", "--", "true").returncode == 0
    assert st.run("-n", "k2", "-g", "g1", "--", "true").returncode == 0
    stop(holder)


def test_key_free_the_moment_the_holder_ends(st):
    holder, _ = st.start_holder("-n", "k", exit_on="USR1")
    holder.send_signal(signal.SIGUSR1)
    assert holder.wait(10) == 0
    r = st.run("-n", "k", "--", "true")
    assert (r.returncode, r.stderr) == (0, "")  # no stale warning: released cleanly
    assert st.run("status", "-n", "k").returncode == 3  # not running, not stale


def test_wait_runs_after_the_holder(st, tmp_path):
    holder, _ = st.start_holder("-n", "k")
    out = tmp_path / "order"
    waiter = st.start("-n", "k", "--wait", "--", "sh", "-c", f"echo waiter >> {out}")
    wait_for(lambda: _waiters(st, "k") == 1, what="waiter queued")
    assert not out.exists()
    assert stop(holder) == 0
    assert waiter.wait(10) == 0
    assert out.read_text() == "waiter\n"


def test_wait_timeout_gives_up_after_about_a_second_and_leaves_the_queue(st):
    holder, _ = st.start_holder("-n", "k")
    t0 = time.monotonic()
    r = st.run("-n", "k", "--wait-timeout", "1s", "--", "true")
    elapsed = time.monotonic() - t0
    assert r.returncode == 75
    assert 1.0 <= elapsed < 4.0
    assert r.stderr.startswith("singlerun: gave up waiting for default/k (held by job ")
    r = st.run("-n", "k", "--wait-timeout", "200ms", "--conflict-exit-code", "99", "--", "true")
    assert r.returncode == 99
    # PostgreSQL ends a waiter's session (and its ticket lock) a moment after it closed it.
    wait_for(lambda: _waiters(st, "k") == 0, timeout=5, what="the timed-out waiters gone")
    stop(holder)


def test_waiters_start_in_arrival_order_and_a_dead_one_leaves(st, tmp_path):
    # A short lease: on a server, a SIGKILLed waiter's ticket ends with its lease.
    args = ("-n", "q", "--lease-ttl", "2s")
    holder, _ = st.start_holder(*args)
    out = tmp_path / "order"
    waiters = []
    for i in range(5):
        waiters.append(st.start(*args, "--wait", "--", "sh", "-c", f"echo {i} >> {out}"))
        wait_for(lambda n=i + 1: _waiters(st, "q") == n, what="queued")
    waiters[2].kill()  # dies while queued
    assert waiters[2].wait(10) == -signal.SIGKILL
    assert stop(holder) == 0
    for i, w in enumerate(waiters):
        if i != 2:
            assert w.wait(20) == 0
    assert out.read_text().split() == ["0", "1", "3", "4"]
    wait_for(lambda: _waiters(st, "q") == 0, timeout=5, what="the queue empty")


def test_signal_while_waiting_leaves_the_queue(st):
    holder, _ = st.start_holder("-n", "k")
    waiter = st.start("-n", "k", "--wait", "--", "true")
    wait_for(lambda: _waiters(st, "k") == 1, what="queued")
    assert stop(waiter, signal.SIGTERM) == 128 + signal.SIGTERM
    assert "Traceback" not in waiter.stderr.read()
    wait_for(lambda: _waiters(st, "k") == 0, timeout=5, what="the waiter gone from the queue")
    stop(holder)


def test_max_concurrent_slots(st):
    holders = [st.start_holder("-n", "m", "--max-concurrent", "2")[0] for _ in range(2)]
    assert st.run("-n", "m", "--max-concurrent", "2", "--", "true").returncode == 75
    (entry,) = json.loads(st.run("status", "--json", "-n", "m").stdout)
    assert len(entry["holders"]) == 2
    waiter = st.start("-n", "m", "--max-concurrent", "2", "--wait", "--", "echo", "in")
    wait_for(lambda: _waiters(st, "m") == 1, what="queued")
    stop(holders[0])
    assert waiter.wait(10) == 0 and waiter.stdout.read() == "in\n"
    stop(holders[1])


def test_max_runtime(st):
    r = st.run("-n", "t", "--max-runtime", "1s", "--kill-after", "1s", "--", "sleep", "30")
    assert r.returncode == 124
    assert json.loads(st.run("history", "--json", "-n", "t").stdout)[0]["outcome"] == "timeout"


def test_status_shows_recent_keys_and_clean_forgets_idle_ones(st):
    from tests.contract.idle_keys import check_idle_keys

    check_idle_keys(st)


def test_check_metrics_and_the_summary(st, tmp_path):
    from tests.contract.monitoring import check_monitoring

    textfile = tmp_path / "textfile"
    textfile.mkdir()
    check_monitoring(st, textfile)


def test_history_says_who_stopped_a_run_whatever_its_exit_status(st):
    """A job that traps SIGTERM and exits 0 is still a stopped run (issue 19.6); the row
    also keeps systemd's invocation ID (issue 24.2)."""
    import os
    import pwd

    me = f"{pwd.getpwuid(os.getuid()).pw_name}@{os.uname().nodename}"
    unit = "0123456789abcdef0123456789abcdef"
    holder, _ = st.start_holder("-n", "k", env={"INVOCATION_ID": unit})
    r = st.run("stop", "-n", "k")
    assert r.returncode == 0, r.stderr
    assert holder.wait(10) == 0  # the job's own status
    (row,) = json.loads(st.run("history", "--json", "-n", "k").stdout)
    assert (row["outcome"], row["exit_status"], row["stopped_by"]) == ("ok", 0, me)
    assert row["invocation_id"] == unit
    assert f"(stopped by {me})" in st.run("history", "-n", "k").stdout
    (entry,) = json.loads(st.run("status", "--json", "-n", "k").stdout)
    assert entry["last"]["stopped_by"] == me
    assert f", stopped by {me}," in st.run("status", "-n", "k").stdout

    holder, _ = st.start_holder("-n", "k")
    assert st.run("-n", "k", "--replace", "--", "true").returncode == 0
    holder.wait(10)
    rows = json.loads(st.run("history", "--json", "-n", "k").stdout)
    replaced = next(r for r in rows if r["outcome"] == "replaced")
    assert replaced["stopped_by"] == me and replaced["invocation_id"] is None
    assert rows[0]["stopped_by"] is None  # the run that replaced it ended by itself
