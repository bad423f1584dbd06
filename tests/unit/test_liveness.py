"""Liveness against real processes: dead, reused, zombie, live, foreign."""

import os
import signal
import subprocess
import time

import psutil

from singlerun.identity import host, process_start_time
from singlerun.liveness import alive, holder, record_alive
from singlerun.record import Record
from singlerun.render import describe


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_live_process_with_its_start_time():
    assert alive(os.getpid(), process_start_time(os.getpid()))
    assert alive(os.getpid(), None)


def test_dead_pid():
    assert not alive(_dead_pid(), None)
    assert not alive(None, None) and not alive(0, None)


def test_reused_pid_is_dead():
    # Our PID is alive, but a record claiming it started an hour earlier names another process.
    assert not alive(os.getpid(), psutil.Process().create_time() - 3600)


def test_zombie_is_dead():
    p = subprocess.Popen(["sleep", "30"])
    p.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not alive(p.pid, None)
    p.wait()


REC = Record(job_id="01J", group="g", name="n", pid=0, host=host(), user="u", started_at=1000.0)


def test_record_alive_through_supervisor_or_job():
    me = (os.getpid(), process_start_time(os.getpid()))
    assert record_alive(REC._replace(pid=me[0], pid_started=me[1]))
    assert record_alive(REC._replace(pid=_dead_pid(), child_pid=me[0], child_started=me[1]))
    assert not record_alive(REC._replace(pid=_dead_pid(), child_pid=_dead_pid()))
    assert record_alive(REC._replace(pid=_dead_pid(), host="elsewhere"))  # never stale here


def test_describe_names_the_live_holder():
    me = os.getpid()
    live = REC._replace(pid=me)
    assert describe([]) == ""
    assert describe([live], now=1192.5) == f" (job 01J, pid {me}, started 3m12s ago)"
    assert describe([live], held=True, now=1010).startswith(" (held by job 01J, pid ")
    dead = _dead_pid()
    orphaned = REC._replace(pid=dead, child_pid=me)
    assert describe([orphaned], now=1010, who=holder) == (
        f" (job 01J, pid {me}, started 10s ago; its singlerun, pid {dead}, is gone)"
    )
    assert "still holds the lock" in describe([REC._replace(pid=dead)], now=1010, who=holder)
    assert describe([live._replace(host="b")], now=1010, who=holder).endswith("; on b)")
