"""A taken key: conflict, --conflict-exit-code, --wait, --wait-timeout, the FIFO queue."""

import re
import signal
import time

import pytest

from tests.conftest import stop, wait_for


def test_second_instance_conflicts_fast_without_running(sr, tmp_path):
    holder, _ = sr.start_holder("-n", "nightly", "-g", "backups")
    marker = tmp_path / "ran"
    t0 = time.monotonic()
    r = sr.run("-n", "nightly", "-g", "backups", "--", "touch", str(marker))
    elapsed = time.monotonic() - t0
    assert r.returncode == 75
    assert elapsed < 0.5 * 4  # generous sanity bound; the figure is measured in benchmarks/
    assert not marker.exists()
    assert re.fullmatch(
        r"singlerun: backups/nightly is already running "
        rf"\(job [0-9A-Z]{{26}}, pid {holder.pid}, started \d+s ago\)\n",
        r.stderr,
    ), r.stderr
    assert stop(holder) == 0


def test_conflict_exit_code(sr):
    holder, _ = sr.start_holder("-n", "k")
    assert sr.run("-n", "k", "--conflict-exit-code", "0", "--", "true").returncode == 0
    assert sr.run("-n", "k", "--conflict-exit-code", "3", "--", "true").returncode == 3
    stop(holder)


def test_other_keys_run_concurrently(sr):
    holder, _ = sr.start_holder("-n", "k", "-g", "g1")
    assert sr.run("-n", "k", "-g", "g2", "--", "true").returncode == 0
    assert sr.run("-n", "k2", "-g", "g1", "--", "true").returncode == 0
    stop(holder)


def test_key_free_the_moment_the_holder_ends(sr):
    holder, _ = sr.start_holder("-n", "k", exit_on="USR1")
    holder.send_signal(signal.SIGUSR1)
    assert holder.wait(10) == 0
    r = sr.run("-n", "k", "--", "true")
    assert (r.returncode, r.stderr) == (0, "")  # no stale warning: released cleanly
    assert not list(sr.lock_dir.glob("*.rec"))


def test_wait_runs_after_the_holder(sr, tmp_path):
    holder, _ = sr.start_holder("-n", "k")
    out = tmp_path / "order"
    waiter = sr.start("-n", "k", "--wait", "--", "sh", "-c", f"echo waiter >> {out}")
    wait_for(lambda: list(sr.lock_dir.glob("*.queue/0*")), what="waiter queued")
    assert not out.exists()
    assert stop(holder) == 0
    assert waiter.wait(10) == 0
    assert out.read_text() == "waiter\n"


def test_wait_timeout_gives_up_after_about_a_second(sr):
    holder, _ = sr.start_holder("-n", "k")
    t0 = time.monotonic()
    r = sr.run("-n", "k", "--wait-timeout", "1s", "--", "true")
    elapsed = time.monotonic() - t0
    assert r.returncode == 75
    assert 1.0 <= elapsed < 3.0
    assert r.stderr.startswith("singlerun: gave up waiting for default/k (held by job ")
    r = sr.run("-n", "k", "--wait-timeout", "200ms", "--conflict-exit-code", "99", "--", "true")
    assert r.returncode == 99
    assert not [p for p in sr.lock_dir.glob("*.queue/*")]  # the timed-out waiter left the queue
    stop(holder)


def test_waiters_start_in_arrival_order_and_a_dead_one_leaves(sr, tmp_path):
    holder, _ = sr.start_holder("-n", "q")
    out = tmp_path / "order"
    waiters = []
    for i in range(5):
        waiters.append(sr.start("-n", "q", "--wait", "--", "sh", "-c", f"echo {i} >> {out}"))
        wait_for(lambda n=i + 1: len(list(sr.lock_dir.glob("*.queue/0*"))) == n, what="queued")
        time.sleep(0.2)
    waiters[2].kill()  # dies while queued
    assert waiters[2].wait(10) == -signal.SIGKILL
    assert stop(holder) == 0
    for i, w in enumerate(waiters):
        if i != 2:
            assert w.wait(15) == 0
    assert out.read_text().split() == ["0", "1", "3", "4"]
    assert not list(sr.lock_dir.glob("*.queue/0*"))


def test_signal_while_waiting_leaves_the_queue(sr):
    holder, _ = sr.start_holder("-n", "k")
    waiter = sr.start("-n", "k", "--wait", "--", "true")
    wait_for(lambda: list(sr.lock_dir.glob("*.queue/0*")), what="queued")
    assert stop(waiter, signal.SIGTERM) == 128 + signal.SIGTERM
    assert not list(sr.lock_dir.glob("*.queue/0*"))
    assert "Traceback" not in waiter.stderr.read()
    stop(holder)


@pytest.mark.parametrize("wait", [[], ["--wait"]])
def test_holder_record_names_the_job(sr, wait):
    holder, job_pid = sr.start_holder("-n", "rec", *wait)
    (rec,) = sr.lock_dir.glob("*.rec")
    text = rec.read_text()
    assert text.startswith("singlerun-record 1\n")
    assert f'"pid":{holder.pid}' in text
    wait_for(lambda: f'"child_pid":{job_pid}' in rec.read_text(), what="child pid recorded")
    stop(holder)
    assert not rec.exists()


def test_waiters_start_in_launch_order_even_if_they_join_late(sr, tmp_path):
    # A waiter reaches the queue well into its start-up; its place is its launch time.
    order = tmp_path / "order"
    holder, _ = sr.start_holder("-n", "q")
    first = sr.start("-n", "q", "--wait", "--", "sh", "-c", f"echo first >> {order}")
    first.send_signal(signal.SIGSTOP)  # launched first, but held back before it can queue
    time.sleep(0.05)
    second = sr.start("-n", "q", "--wait", "--", "sh", "-c", f"echo second >> {order}")
    wait_for(lambda: len(list(sr.lock_dir.glob("*.queue/0*"))) == 1, what="second queued")
    first.send_signal(signal.SIGCONT)
    wait_for(lambda: len(list(sr.lock_dir.glob("*.queue/0*"))) == 2, what="first queued")
    stop(holder)
    assert (first.wait(20), second.wait(20)) == (0, 0)
    assert order.read_text().split() == ["first", "second"]


def test_waiting_for_one_of_several_slots_sleeps_and_wakes_at_once(sr, tmp_path):
    import psutil

    holders = [sr.start_holder("-n", "m", "--max-concurrent", "3")[0] for _ in range(3)]
    out = tmp_path / "ran"
    waiter = sr.start("-n", "m", "--max-concurrent", "3", "--wait", "--", "touch", str(out))
    wait_for(lambda: list(sr.lock_dir.glob("*.queue/0*")), what="queued")
    proc = psutil.Process(waiter.pid)
    time.sleep(0.3)  # past its start-up
    before = sum(proc.cpu_times()[:2])
    time.sleep(1.5)
    # Polling every 20 ms cost ~55 ms of CPU here; sleeping in the kernel costs ~0.
    assert sum(proc.cpu_times()[:2]) - before < 0.03
    assert waiter.poll() is None and not out.exists()
    t0 = time.monotonic()
    stop(holders[1])  # any one slot frees: the waiter takes it
    assert waiter.wait(10) == 0 and out.exists()
    assert time.monotonic() - t0 < 5  # generous: it is woken, not timed out
    for h in (holders[0], holders[2]):
        stop(h)
