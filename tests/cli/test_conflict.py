"""The lock directory's side of a taken key: the record on disk, the queue's launch order,
sleeping for one of several slots. What every store does alike is tests/contract."""

import signal
import time

import pytest

from tests.conftest import stop, wait_for


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
