"""The store base (store/base.py) on a toy store in memory: the acquire template, the
conflict's holders, stop requests, the fencing environment, closing on every way out."""

import pytest

from singlerun.busy import LockBusy, WaitTimeout
from singlerun.history import Run
from singlerun.keys import JobKey, KeyFilter
from singlerun.record import Record
from singlerun.store.protocol import KeyState
from tests.unit.memstore import MemoryStore

KEY = JobKey.make("g", "n")


def _me(job_id: str) -> Record:
    return Record(job_id, "g", "n", 100, "h", "u", 1000.0)


def test_a_free_key_is_granted_and_a_taken_one_names_its_holders():
    store = MemoryStore()
    first = store.acquire(KEY, _me("A"), slots=2, wait=False, deadline=None)
    second = store.acquire(KEY, _me("B"), slots=2, wait=False, deadline=None)
    assert (first.slot, second.slot) == (0, 1)
    with pytest.raises(LockBusy) as busy:
        store.acquire(KEY, _me("C"), slots=2, wait=False, deadline=None)
    assert not isinstance(busy.value, WaitTimeout)
    assert sorted(r.job_id for r in busy.value.holders) == ["A", "B"]
    # Only the slots asked for count: with one slot, B's (slot 1) is not a holder.
    with pytest.raises(LockBusy) as busy:
        store.acquire(KEY, _me("C"), slots=1, wait=False, deadline=None)
    assert [r.job_id for r in busy.value.holders] == ["A"]


def test_a_wait_that_runs_out_names_the_holders_too():
    store = MemoryStore()
    store.acquire(KEY, _me("A"), slots=1, wait=False, deadline=None)
    with pytest.raises(WaitTimeout) as timeout:
        store.acquire(KEY, _me("B"), slots=1, wait=True, deadline=0.0)
    assert [r.job_id for r in timeout.value.holders] == ["A"]


def test_a_stop_request_reaches_the_holder_it_names_and_no_other():
    store = MemoryStore()
    lease = store.acquire(KEY, _me("A"), slots=1, wait=False, deadline=None)
    store.mark_stop(_me("Z"), "stopped")  # not a holder: nothing is written
    assert store.stops == {}
    store.mark_stop(_me("A"), "replaced", 15, 2.5)
    request = store.stop_request(lease)
    assert request is not None
    assert (request.reason, request.job_id, request.signal, request.kill_after) == (
        "replaced",
        "A",
        15,
        2.5,
    )
    assert store.stop_request(lease) is None  # read once


def test_the_job_learns_the_fencing_token_only_from_a_fencing_store():
    store = MemoryStore()
    lease = store.acquire(KEY, _me("A"), slots=1, wait=False, deadline=None)
    assert store.job_env(lease) == {"SINGLERUN_FENCING_TOKEN": lease.token}
    store.fencing = False
    assert store.job_env(lease) == {}


def test_a_store_is_closed_on_every_way_out_of_its_block():
    store = MemoryStore()
    with pytest.raises(RuntimeError), store as same:
        assert same is store
        raise RuntimeError
    assert store.closed


def test_key_statistics_come_from_the_runs_unless_the_store_keeps_them():
    store = MemoryStore()
    store.add_runs(
        Run("A", "g", "n", "h", 1, 10.0, 11.0, 0, "ok", "[]"),
        Run("B", "g", "n", "h", 1, 20.0, 21.0, 1, "failed", "[]"),
    )
    stats = store.key_stats(KeyFilter())[("g", "n")]
    assert stats.last is not None and stats.last.job_id == "B"
    assert stats.last_success is not None and stats.last_success.job_id == "A"
    assert stats.outcomes == {"ok": 1, "failed": 1}


def test_a_hashed_stem_gets_its_key_back_from_any_record():
    key = JobKey.make("g", "x" * 200)  # too long for a file name: hashed
    assert JobKey.from_stem(key.stem) is None
    record = Record("A", "g", "x" * 200, 1, "h", "u", 1.0)
    assert KeyState(key.stem, None, stale=[None, record]).named().key == key
    assert KeyState(key.stem, None).named().key is None
