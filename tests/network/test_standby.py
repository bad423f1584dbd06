"""A network waiter forks its job and the job's watchdog while it waits (singlerun/standby.py,
issue 21): the job held at a gate, the watchdog unarmed. Neither may run, kill or outlive
anything: a waiter that leaves the queue takes both with it, one killed meanwhile is
replaced at the handoff, and the job is guarded from its first instant as before."""

import contextlib
import json
import os
import signal
import time

import psutil
import pytest

from singlerun.keys import JobKey
from singlerun.record import parse
from tests.conftest import dead, wait_for


def _standby(waiter_pid: int) -> tuple[int, int]:
    """(the job at its gate, its watchdog): the waiter's two children, told apart by the
    watchdog's session of its own and the job's process group of its own."""

    def found():
        kids = psutil.Process(waiter_pid).children()
        job = [p.pid for p in kids if os.getpgid(p.pid) == p.pid and os.getsid(p.pid) != p.pid]
        dog = [p.pid for p in kids if os.getsid(p.pid) == p.pid]
        return (job[0], dog[0]) if len(kids) == 2 and job and dog else None

    return wait_for(found, what="the waiter's job and watchdog forked")


def _holder(rr, name: str, release):
    script = f"while [ ! -e {release} ]; do sleep 0.02; done"
    holder = rr.start("-n", name, "--", "sh", "-c", script)
    wait_for(lambda: rr.run("status", "-n", name).returncode == 0, what="the holder running")
    return holder


def _queued(rr, tmp_path, name: str, *options: str):
    """A holder of `name`, and a waiter queued behind it whose job would create `ran`:
    (holder, release file, ran file, waiter, its forked job's PID, its watchdog's PID)."""
    release, ran = tmp_path / "release", tmp_path / "ran"
    holder = _holder(rr, name, release)
    waiter = rr.start("-n", name, "--wait", *options, "--", "touch", str(ran))
    job, dog = _standby(waiter.pid)
    assert not ran.exists()
    return holder, release, ran, waiter, job, dog


def _nothing_ran(holder, release, ran) -> None:
    """The holder was left alone (an unarmed watchdog kills nothing) and ends as it would;
    the waiter's job never ran."""
    assert holder.poll() is None
    release.touch()
    assert holder.wait(15) == 0
    assert not ran.exists()


@pytest.mark.parametrize("leaving", ["SIGTERM", "--wait-timeout"])
def test_a_waiter_that_leaves_the_queue_takes_its_forked_job_and_watchdog_along(
    rr, tmp_path, leaving
):
    timeout = ["--wait-timeout", "3s"] if leaving == "--wait-timeout" else []
    holder, release, ran, waiter, job, dog = _queued(rr, tmp_path, "sb", *timeout)
    if leaving == "SIGTERM":
        waiter.send_signal(signal.SIGTERM)
    assert waiter.wait(15) == (143 if leaving == "SIGTERM" else 75), waiter.stderr.read()
    for pid in (job, dog):  # reaped by the waiter itself: not even a zombie is left
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(pid).status()
    _nothing_ran(holder, release, ran)


def test_a_waiter_killed_while_waiting_leaves_nothing_behind(rr, tmp_path):
    holder, release, ran, waiter, job, dog = _queued(rr, tmp_path, "sk")
    waiter.kill()
    waiter.wait(15)
    # Each sees its pipe close and exits by itself (a zombie of this subreaper, then).
    wait_for(lambda: dead(job) and dead(dog), what="the forked job and watchdog gone")
    _nothing_ran(holder, release, ran)


def test_a_forked_job_killed_while_waiting_is_forked_again_at_the_handoff(rr, tmp_path):
    release, out = tmp_path / "release", tmp_path / "out"
    holder = _holder(rr, "sa", release)
    script = f'echo "$SINGLERUN_FENCING_TOKEN $SINGLERUN_JOB_NAME" > {out}'
    waiter = rr.start("-n", "sa", "--wait", "--", "sh", "-c", script)
    job, dog = _standby(waiter.pid)
    os.kill(job, signal.SIGKILL)
    wait_for(lambda: dead(job), what="the forked job killed")
    time.sleep(0.2)  # still waiting, unaffected
    assert waiter.poll() is None
    release.touch()
    assert holder.wait(15) == 0
    assert waiter.wait(15) == 0, waiter.stderr.read()
    token, name = out.read_text().split()
    assert name == "sa" and token.isdigit()
    assert dead(dog)  # the watchdog forked for the dead one was let go of


def _libraries(pid: int) -> set[str]:
    """The names of the files mapped into a process's memory."""
    with open(f"/proc/{pid}/maps") as maps:
        return {os.path.basename(f[5]) for line in maps if len(f := line.split()) > 5}


def _sockets(pid: int) -> list[str]:
    fds = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    return [target for target in fds if target.startswith("socket:")]


def test_the_job_and_watchdog_are_copies_of_the_waiter_before_its_client_loaded(rr, tmp_path):
    """Forked before the store's client library is imported, each copy is of the smaller
    process (a copy costs CPU to end: most of a drain's, issue 21), and holds no
    connection to the server."""
    holder, release, ran, waiter, job, dog = _queued(rr, tmp_path, "sm")

    def loaded(pid: int) -> bool:
        return any(name.startswith("_socket.") for name in _libraries(pid))

    wait_for(lambda: loaded(waiter.pid), what="the waiter's client loaded")
    for pid in (job, dog):
        assert not loaded(pid)
        assert _sockets(pid) == []
    release.touch()
    assert holder.wait(15) == 0
    assert waiter.wait(15) == 0, waiter.stderr.read()
    assert ran.exists()


@pytest.mark.parametrize("fault", ["KILL", "STOP"])
def test_a_queued_waiters_job_is_guarded_from_its_first_instant(rr, server, tmp_path, fault):
    """As test_network.test_no_instant_of_a_job_without_its_watchdog, for the job forked
    while it waited: its watchdog, armed at the handoff, kills it before the lease can
    lapse when the job kills or freezes its singlerun the moment it runs."""
    release, pidfile = tmp_path / "release", tmp_path / "job.pid"
    holder = _holder(rr, "sg", release)
    job = f"echo $$ > {pidfile}; kill -{fault} $PPID; exec sleep 30"
    waiter = rr.start("-n", "sg", "--wait", "--lease-ttl", "3s", "--", "sh", "-c", job)
    _standby(waiter.pid)
    release.touch()
    try:
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30))
        t0 = time.monotonic()
        wait_for(lambda: dead(pid), timeout=5, what="the job killed by its watchdog")
        assert time.monotonic() - t0 < 3.0
    finally:
        waiter.send_signal(signal.SIGCONT)
    assert holder.wait(15) == 0
    assert waiter.wait(15) == (-9 if fault == "KILL" else 125)


def _published(server, ns: str, name: str):
    """Slot 0's holder record as the server has it."""
    stem = JobKey("default", name).stem
    if server.kind == "redis":
        data = server.client().hget(f"{ns}:{{{stem}}}:recs", "0")
    else:
        (data,) = server.sql(f'SELECT record FROM "{ns}".holders WHERE stem = %s', stem)[0]
    return parse(bytes(data))


def test_the_grant_publishes_the_record_naming_the_job_forked_ahead(rr, server, ns, tmp_path):
    """The handoff makes no request to name the job: the grant's record already does, with
    the grant's own fencing token and start time (not the time the waiter began to wait)."""
    release, out = tmp_path / "release", tmp_path / "out"
    holder = _holder(rr, "sn", release)
    script = f'echo "$$ $SINGLERUN_FENCING_TOKEN $SINGLERUN_JOB_ID" > {out}; exec sleep 30'
    waiter = rr.start("-n", "sn", "--wait", "--", "sh", "-c", script)
    job, _ = _standby(waiter.pid)
    time.sleep(1.5)  # waited a while
    release.touch()
    assert holder.wait(15) == 0
    pid, token, job_id = wait_for(lambda: out.exists() and out.read_text().split(), 15)
    t_started = time.time()
    record = _published(server, ns, "sn")
    assert record is not None, "a record the server holds and singlerun can read"
    assert (record.job_id, record.pid, record.child_pid) == (job_id, waiter.pid, int(pid))
    assert int(pid) == job
    assert record.token == token and token.isdigit()
    assert record.child_started is not None and record.ttl is not None
    assert t_started - 1.0 < record.started_at <= t_started  # the grant's time, not the wait's
    (entry,) = json.loads(rr.run("status", "--json", "-n", "sn").stdout)
    assert (entry["state"], entry["job_id"]) == ("running", job_id)
    waiter.send_signal(signal.SIGTERM)
    assert waiter.wait(15) == 143


def test_a_retrying_run_keeps_one_watchdog_not_one_per_attempt(rr, tmp_path):
    """Each attempt's watchdog is let go of and reaped before the next attempt starts (a
    --respawn loop that ran for months must not pile up one per attempt, even as zombies)."""
    runs = tmp_path / "runs"
    script = f"echo $$ >> {runs}; sleep 0.4; exit 1"
    proc = rr.start("-n", "sr", "--retry", "5", "--retry-delay", "0.1s", "--", "sh", "-c", script)
    most, deadline = 0, time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(proc.pid).children()
            most = max(most, len(kids))  # the attempt's job and its watchdog, at most
        time.sleep(0.05)
    assert proc.wait(1) == 1, proc.stderr.read()
    assert len(runs.read_text().split()) == 6
    assert 1 <= most <= 2
