"""A job never outlives its lease: singlerun killed or frozen, the server paused, restarted
empty. Real processes, a real server, real signals."""

import json
import os
import re
import signal
import time

import psutil

from tests.conftest import records, stop, wait_for

# A job with grandchildren: the whole group must go.
FAMILY = ["sh", "-c", "sleep 300 & sleep 300 & echo ready; wait"]


def _start_family(rr, *args):
    proc = rr.start(*args, "--", *FAMILY)
    assert proc.stdout.readline().strip() == "ready"
    (job,) = [p for p in psutil.Process(proc.pid).children() if p.name() == "sh"]
    return proc, [job, *job.children(recursive=True)]


def _gone(procs):
    def dead(p):
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(dead(p) for p in procs)


def _lease_key(server, prefix, name):
    keys = server.client().keys(f"{prefix}{{default.{name}}}:lease:*")
    return keys[0] if keys else None


def test_sigkill_of_singlerun_kills_the_job_group_at_once(rr):
    proc, family = _start_family(rr, "-n", "k", "--lease-ttl", "30s")
    assert len(family) == 3
    proc.kill()
    proc.wait()
    wait_for(lambda: _gone(family), timeout=5, what="job group killed by the watchdog")
    # Nobody could release the lease: the next run waits it out (PostgreSQL freed the lock
    # with the session at once, but the lease stays in force, as on Redis).
    r = rr.run("-n", "k", "--", "true")
    assert r.returncode == 75
    assert "that process is gone; its lease has not run out yet" in r.stderr, r.stderr


def test_frozen_singlerun_has_its_job_killed_before_the_lease_expires(rr, server, ns):
    proc, family = _start_family(rr, "-n", "f", "--lease-ttl", "2s")
    proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: _gone(family), timeout=5, what="job killed while singlerun is frozen")
        if server.kind == "redis":
            lease = _lease_key(server, ns + ":", "f")
            assert lease is not None and server.client().pttl(lease) > 0  # not yet expired
            # Once it expires, another instance takes the key: the old job is long gone.
            ok = lambda: rr.run("-n", "f", "-q", "--", "true").returncode == 0  # noqa: E731
            wait_for(ok, what="key free")
        else:  # the frozen session still holds its lock: the key stays taken, and safe
            assert rr.run("-n", "f", "-q", "--", "true").returncode == 75
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(10) == 125  # it comes back to a lost lease
    rows = json.loads(rr.run("history", "--json", "-n", "f").stdout)
    assert [r["outcome"] for r in rows][-1] == "lost"


def test_server_paused_longer_than_the_ttl_stops_the_job_125(rr, server):
    proc, family = _start_family(rr, "-n", "p", "--lease-ttl", "2s")
    server.pause()
    try:
        assert proc.wait(15) == 125
        assert _gone(family)
        err = proc.stderr.read()
        scheme = {"redis": "redis://", "postgres": "postgresql://"}[server.kind]
        assert f"the lease on {scheme}" in err and "was lost" in err and "Traceback" not in err
    finally:
        server.resume()


def test_server_paused_briefly_is_survived(rr, server):
    proc = rr.start("-n", "b", "--lease-ttl", "3s", "--", "sh", "-c", "sleep 2; echo done")
    wait_for(lambda: rr.run("status", "-n", "b").returncode == 0, what="running")
    server.pause()
    time.sleep(1.0)  # under the deadline (3 s - 0.6 s margin)
    server.resume()
    assert proc.wait(10) == 0
    assert proc.stdout.read() == "done\n"


def _lose_the_lease(server, prefix_or_ns, name):
    """PostgreSQL: a crash (every session, and so every advisory lock, is gone). Redis: the
    lease taken by another value (a restarted Redis no longer loses it: the holder re-takes
    it, tests/network/test_restart.py)."""
    if server.kind == "postgres":
        server.restart()
        return
    db = server.client()
    wait_for(lambda: _lease_key(server, f"{prefix_or_ns}:", name), what="the lease")
    db.set(_lease_key(server, f"{prefix_or_ns}:", name), "01SOMEBODYELSE 1", px=30000)


def test_a_lease_lost_mid_run_stops_the_job(rr, server, ns):
    proc, family = _start_family(rr, "-n", "r", "--lease-ttl", "3s")
    _lose_the_lease(server, ns, "r")
    assert proc.wait(10) == 125
    assert _gone(family)


def test_on_lease_lost_continue_keeps_the_job_running(rr, server, ns):
    proc = rr.start(
        "-n", "c", "--lease-ttl", "2s", "--on-lease-lost", "continue", "--",
        "sh", "-c", "sleep 3; echo finished",
    )  # fmt: skip
    wait_for(lambda: rr.run("status", "-n", "c").returncode == 0, what="running")
    _lose_the_lease(server, ns, "c")
    assert proc.wait(15) == 0
    assert proc.stdout.read() == "finished\n"
    assert "keeps running (--on-lease-lost)" in proc.stderr.read()


def test_a_job_running_on_without_its_lease_still_dies_with_its_singlerun(rr, server, ns):
    """`--on-lease-lost continue` keeps the job running past a lost lease, not past its
    singlerun: killed, even with SIGKILL, it takes the job along (its watchdog used to be
    disarmed at the loss, and the job ran on unsupervised)."""
    proc, family = _start_family(rr, "-n", "ck", "--lease-ttl", "2s", "--on-lease-lost", "continue")
    _lose_the_lease(server, ns, "ck")

    def adrift():
        (e,) = json.loads(rr.run("status", "--json", "-n", "ck").stdout)
        return e["lease_lost"]

    wait_for(adrift, timeout=15, what="the run shown with its lease lost")
    assert not _gone(family)
    proc.kill()
    proc.wait()
    wait_for(lambda: _gone(family), timeout=5, what="the job killed by its watchdog")


def test_a_run_that_lost_its_lease_and_runs_on_is_shown_and_not_falsely_stopped(rr, server, ns):
    """Issue 19.3: with `continue`, status showed the key free (or another's) while the job
    ran on. It shows `running, lease lost` for as long as the job runs; `stop` cannot reach
    it (it hears no requests) and says so with 1, never 'stopped' or 'not running'."""
    proc = rr.start(
        "-n", "s", "--lease-ttl", "2s", "--on-lease-lost", "continue", "--",
        "sh", "-c", "echo started; while [ ! -e \"$0\" ]; do sleep 0.05; done",
        str(rr.lock_dir.parent / "s-done"),
    )  # fmt: skip
    assert proc.stdout.readline() == "started\n"
    _lose_the_lease(server, ns, "s")

    def adrift():
        (e,) = json.loads(rr.run("status", "--json", "-n", "s").stdout)
        return e if e["lease_lost"] else None

    e = wait_for(adrift, what="the run shown with its lease lost")
    assert e["state"] == "running" and e["pid"] == proc.pid
    assert [h["lease_lost"] for h in e["holders"]][-1] is True
    text = rr.run("status", "-n", "s")
    assert text.returncode == 0 and "default/s  running, lease lost  job " in text.stdout
    r = rr.run("stop", "-n", "s", "--timeout", "2s")
    assert r.returncode == 1 and "lost its lease and runs on" in r.stderr, r
    assert proc.poll() is None
    (rr.lock_dir.parent / "s-done").touch()
    assert proc.wait(15) == 0
    (e,) = json.loads(rr.run("status", "--json", "-n", "s").stdout)
    assert e["state"] != "running" and not e["lease_lost"], e


def test_on_lease_lost_continue_survives_a_server_paused_past_the_ttl(rr, server):
    """Issue 19: with the server paused past the TTL, the watchdog SIGKILLed the job (137)
    although the message said it kept running. With `continue` the job runs to its own
    end, one warning says the lease is lost, and the exit status is the job's own."""
    proc = rr.start(
        "-n", "pc", "--lease-ttl", "2s", "--on-lease-lost", "continue", "--",
        "sh", "-c", "echo started; sleep 4; echo finished; exit 3",
    )  # fmt: skip
    assert proc.stdout.readline() == "started\n"
    server.pause()
    try:
        time.sleep(3)  # past the 2 s lease
    finally:
        server.resume()
    assert proc.wait(15) == 3
    assert proc.stdout.read() == "finished\n"
    err = proc.stderr.read()
    assert err.count("\n") == 1 and "the job keeps running (--on-lease-lost)" in err, err


def test_record_names_the_lease_token(rr):
    holder, _ = rr.start_holder("-n", "t")
    r = rr.run("status", "--json", "-n", "t")
    assert json.loads(r.stdout)[0]["state"] == "running"
    assert not re.search(r"\.rec$", " ".join(p.name for p in rr.lock_dir.iterdir()))
    assert records(rr.lock_dir) == ""  # nothing in the lock directory: it is all on the server
    stop(holder)


def test_every_watchdog_is_reaped_none_is_left_a_zombie(rr):
    """Issue 21: a watchdog is reaped after the release, no longer waited for at the job's
    end; each attempt's (three here) must still be reaped before singlerun exits. One it
    left would be re-parented to us, the subreaper: a zombie, or a process still running
    singlerun's command line (a forked singlerun)."""
    mine = psutil.Process(os.getpid())
    before = {p.pid for p in mine.children()}
    r = rr.run("-n", "z", "--retry", "2", "--retry-delay", "100ms", "--", "false")
    assert r.returncode == 1, r.stderr

    def left(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE or "--retry" in p.cmdline()
        except psutil.NoSuchProcess:
            return False

    assert [p.pid for p in mine.children() if p.pid not in before and left(p)] == []
