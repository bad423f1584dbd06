"""The lease ticker (ticker.py) against a toy store whose renewals the test scripts: each
answer moves the deadline, ends the lease, or carries a stop request."""

import signal
import time

import pytest

from singlerun.keys import JobKey
from singlerun.lease import Renewal, StopRequest, margin
from singlerun.record import Record
from singlerun.ticker import LOST, LeaseTicker
from tests.unit.memstore import MemoryStore

KEY = JobKey.make("g", "n")


def _ticker(ttl: float = 3.0, keep_running: bool = False, granted_ago: float = 0.0):
    store = MemoryStore(ttl)
    lease = store.acquire(KEY, Record("A", "g", "n", 1, "h", "u", 1.0), slots=1, wait=False,
                          deadline=None)  # fmt: skip
    lease.granted = time.monotonic() - granted_ago
    ticker = LeaseTicker(store, lease, "A", sig=signal.SIGINT, kill_after=5.0,
                         keep_running=keep_running)  # fmt: skip
    return store, ticker


def test_margin_is_a_fifth_of_the_ttl_and_at_most_two_seconds():
    assert margin(1.0) == pytest.approx(0.2)
    assert margin(30.0) == 2.0


def test_renewals_come_every_third_of_the_ttl_and_at_least_every_second():
    assert _ticker(ttl=1.5)[1].interval == pytest.approx(0.5)
    assert _ticker(ttl=30)[1].interval == 1.0


def test_a_good_renewal_moves_the_deadline_from_when_it_was_asked():
    store, ticker = _ticker(ttl=3.0, granted_ago=1.0)
    before = ticker.deadline
    asked = time.monotonic()
    store.answers.append(Renewal(True, None, asked))
    assert ticker.tick() is None
    assert ticker.deadline == pytest.approx(asked + 3.0 - margin(3.0))
    assert ticker.deadline > before and not ticker.expired()


def test_a_refused_renewal_stops_the_job_within_what_is_left_of_the_lease():
    store, ticker = _ticker(ttl=3.0)
    store.answers.append(Renewal(False))
    stop = ticker.tick()
    assert stop is not None and stop.reason == LOST and stop.signal == signal.SIGINT
    assert 0 < stop.kill_after <= 3.0 - margin(3.0)  # not the 5 s asked: the lease ends first
    assert ticker.lost and ticker.expired()
    assert ticker.tick() is None  # said once


def test_with_on_lease_lost_continue_a_lost_lease_is_a_warning(capfd):
    store, ticker = _ticker(keep_running=True)
    store.answers.append(Renewal(False))
    assert ticker.tick() is None
    assert ticker.lost
    assert "the job keeps running (--on-lease-lost)" in capfd.readouterr().err


def test_no_answer_is_waited_out_until_the_deadline_then_the_lease_is_lost():
    store, ticker = _ticker(ttl=3.0)
    store.answers.append(Renewal(None))
    assert ticker.tick() is None and not ticker.lost  # the server may answer next time
    store, ticker = _ticker(ttl=3.0, granted_ago=10.0)  # past its deadline already
    store.answers.append(Renewal(None))
    stop = ticker.tick()
    assert stop is not None and stop.reason == LOST and stop.kill_after == 0


def test_a_stop_request_for_this_job_with_a_signal_stops_it():
    store, ticker = _ticker()
    store.answers.append(Renewal(True, StopRequest("stopped", "A", signal.SIGTERM, 1.5)))
    stop = ticker.tick()
    assert stop is not None and (stop.reason, stop.signal, stop.kill_after) == (
        "stopped",
        signal.SIGTERM,
        1.5,
    )
    # For another attempt's job, or without a signal (the stopper signals it itself): none.
    store.answers.append(Renewal(True, StopRequest("stopped", "B", signal.SIGTERM, 1.5)))
    store.answers.append(Renewal(True, StopRequest("replaced", "A")))
    assert ticker.tick() is None and ticker.tick() is None
