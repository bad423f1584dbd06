"""Redis restarts without its data (issue 19.1): no grant starts a job beside a job from
before the restart. A live holder re-takes its lease; grants wait for it (scripts._EPOCH)."""

import signal
import sys
import time

from tests.conftest import OVERLAP_JOB, stop, wait_for


def _inside(d):
    return (d / "inside").exists()


def _violations(d):
    p = d / "violations"
    return p.read_text() if p.exists() else ""


def test_an_empty_restart_grants_nothing_beside_the_running_job(rr, redis_server, tmp_path):
    """Before: the newcomer was granted the emptied key at once, and its job ran beside the
    holder's until the holder's next renewal noticed (0.1-1 s)."""
    job = [*OVERLAP_JOB, str(tmp_path)]
    # 15 s: the checks below must all fall within the holder's job (restarting the server
    # and two runs once took over 6 s with the suite in two processes).
    holder = rr.start("-n", "k", "--lease-ttl", "10s", "--", *job, "15")
    wait_for(lambda: _inside(tmp_path), what="the holder's job inside")
    redis_server.restart()
    late = rr.run("-n", "k", "--lease-ttl", "10s", "--", *job, "0.2")
    assert late.returncode == 75, late.stderr  # the holder re-took its lease meanwhile
    assert "already running" in late.stderr and f"pid {holder.pid}" in late.stderr
    assert _inside(tmp_path) and not _violations(tmp_path)
    status = rr.run("status", "-n", "k")  # the re-taken lease shows its record again
    assert status.returncode == 0 and f"pid {holder.pid}" in status.stdout, status.stdout
    assert holder.wait(30) == 0, holder.stderr.read()  # its job ran to its own end
    assert not _violations(tmp_path)
    assert rr.run("-n", "k", "--", "true").returncode == 0  # and released the key


def test_a_holder_that_could_not_re_take_its_lease_is_waited_for(rr, redis_server, tmp_path):
    """A frozen holder cannot re-take its lease; once another holder has re-taken one, the
    server's data is known lost, and grants wait one lease TTL: by then the frozen
    holder's watchdog has killed its job."""
    live = rr.start("-n", "live", "--lease-ttl", "8s", "--", "sleep", "30")
    frozen = rr.start("-n", "k", "--lease-ttl", "8s", "--", "sh", "-c", "echo $$; exec sleep 60")
    old_job = int(frozen.stdout.readline())
    wait_for(lambda: rr.run("status", "-n", "live").returncode == 0, what="live holds")
    # The newcomer's job notes whether the frozen holder's job was still alive.
    check = [sys.executable, "-c", ALIVE, str(old_job), str(tmp_path / "seen")]
    frozen.send_signal(signal.SIGSTOP)
    try:
        redis_server.restart()
        wait_for(lambda: redis_server.client().exists(rr_lease(rr, "live")), what="re-taken")
        late = rr.run("-n", "k", "--lease-ttl", "8s", "--", *check)
        assert late.returncode == 75
        assert "default/k is held back: redis://" in late.stderr, late.stderr
        assert "lost its data and a holder from before re-took its lease" in late.stderr
        assert late.stderr.count("\n") == 1
        waiter = rr.start("-n", "k", "--lease-ttl", "8s", "--wait", "--", *check)
        assert waiter.wait(15) == 0, waiter.stderr.read()  # ran once the TTL was over
        assert (tmp_path / "seen").read_text() == "dead"  # the watchdog killed it first
    finally:
        frozen.send_signal(signal.SIGCONT)
        stop(live)
    assert frozen.wait(10) == 125


# argv: PID FILE. Writes "dead" to FILE if PID is gone or a zombie, else "alive".
ALIVE = """
import sys
try:
    with open(f"/proc/{sys.argv[1]}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
except OSError:
    state = "Z"
open(sys.argv[2], "w").write("dead" if state in "ZX" else "alive")
"""


def rr_lease(rr, name):
    prefix = rr.env["SINGLERUN_BACKEND"].split("prefix=")[1]
    return f"{prefix}{{default.{name}}}:lease:0"


def test_a_brand_new_server_just_works(rr, redis_server):
    """A new server looks like one that lost its data: the first grant waits a moment
    (at most 3 s), without --wait too, and says nothing."""
    redis_server.restart()
    t0 = time.monotonic()
    r = rr.run("-n", "new", "--", "true")
    assert (r.returncode, r.stderr) == (0, "")
    assert time.monotonic() - t0 < 3.0 + 2.0  # the grace, and a generous margin
