import os
import re
import subprocess
import time

import psutil

from singlerun.identity import new_job_id, process_start_time


def test_start_time_matches_psutil():
    child = subprocess.Popen(["sleep", "5"])
    try:
        for pid in (os.getpid(), child.pid):
            assert process_start_time(pid) == psutil.Process(pid).create_time()
    finally:
        child.kill()
        child.wait()
    assert process_start_time(child.pid) is None  # reaped: gone


def test_job_ids_are_unique_url_safe_and_sortable():
    ids = []
    for _ in range(3):
        ids.append(new_job_id())
        time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(re.fullmatch(r"[0-9A-Z]{26}", i) for i in ids)
    assert len({new_job_id() for _ in range(1000)}) == 1000


def test_surely_running():
    from singlerun.identity import surely_running

    me = os.getpid()
    assert surely_running(me, process_start_time(me))
    assert not surely_running(me, process_start_time(me) - 5)  # PID reused
    assert not surely_running(me, None)
    child = subprocess.Popen(["sleep", "30"])
    started = process_start_time(child.pid)
    child.kill()
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not surely_running(child.pid, started)  # a zombie
    child.wait()
    assert not surely_running(child.pid, started)  # gone
