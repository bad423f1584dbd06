"""A lock server is not a trusted party (issue 18, docs/CONTRACT.md §6): what is read from Redis or
PostgreSQL never steers a signal, and data a hostile user of the server writes can neither
crash a holder's singlerun nor free its key while its job runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil

from singlerun.keys import JobKey
from singlerun.lease import StopRequest
from singlerun.record import Record, encode
from tests.conftest import stop, wait_for


def _holder_job_id(rr, name: str) -> str:
    (entry,) = json.loads(rr.run("status", "--json", "-n", name).stdout)
    assert entry["state"] == "running", entry
    return str(entry["job_id"])


def _forge_record(server, ns: str, name: str, record: Record) -> None:
    """Rewrite slot 0's holder record on the server, as anyone with its password can."""
    stem = JobKey("default", name).stem
    if server.kind == "redis":
        server.client().hset(f"{ns}:{{{stem}}}:recs", "0", encode(record))
    else:
        server.sql(
            f'UPDATE "{ns}".holders SET record = %s WHERE stem = %s AND slot = 0',
            encode(record),
            stem,
        )


def _forge_stop(server, ns: str, name: str, job_id: str, request: str) -> None:
    stem = JobKey("default", name).stem
    if server.kind == "redis":
        server.client().set(f"{ns}:{{{stem}}}:stop:0", request)
    else:
        server.sql(
            f'INSERT INTO "{ns}".stops VALUES (%s, 0, %s, %s) ON CONFLICT (stem, slot) '
            "DO UPDATE SET job_id = excluded.job_id, request = excluded.request",
            stem,
            job_id,
            request,
        )


def test_a_forged_record_naming_a_local_process_never_gets_it_signalled(rr, server, ns):
    """The confused deputy: a record rewritten to name an unrelated process of this host
    (its real PID and start time) made `stop` and `--replace` kill it."""
    victim = subprocess.Popen(["sleep", "60"])
    started = psutil.Process(victim.pid).create_time()
    holder, _ = rr.start_holder("-n", "d")
    try:
        job_id = _holder_job_id(rr, "d")
        forged = Record(
            job_id=job_id, group="default", name="d", pid=victim.pid, host=os.uname().nodename,
            user="nobody", started_at=time.time(), pid_started=started, child_pid=victim.pid,
            child_started=started,
        )  # fmt: skip
        _forge_record(server, ns, "d", forged)
        r = rr.run("-n", "d", "--replace", "--kill-after", "1s", "--", "true")
        assert victim.poll() is None, "--replace signalled a process named by the server"
        # The stop went to the holder's own singlerun, which stopped its own job.
        assert r.returncode == 0, r.stderr
        holder.wait(10)  # its job ends on SIGTERM
        holder, _ = rr.start_holder("-n", "d")
        _forge_record(server, ns, "d", forged._replace(job_id=_holder_job_id(rr, "d")))
        r = rr.run("stop", "-n", "d", "--kill-after", "1s", "--timeout", "10s")
        assert victim.poll() is None, "stop signalled a process named by the server"
        assert r.returncode == 0 and r.stdout.startswith("stopped default/d"), r
        holder.wait(10)
    finally:
        stop(holder)
        victim.kill()
        victim.wait()


def test_a_forged_stop_request_neither_crashes_the_holder_nor_frees_its_key(rr, server, ns):
    """`stopped JOB 99999 1.0` (or -5, 10**30) made the holder's singlerun die with an
    internal error, release the lease and leave its job running unguarded."""
    holder, _ = rr.start_holder("-n", "s", "--lease-ttl", "3s")
    try:
        job_id = _holder_job_id(rr, "s")
        for request in (
            f"stopped {job_id} 99999 1.0",
            f"stopped {job_id} -5 1.0",
            f"stopped {job_id} 15 {10**30}",
            f"stopped {job_id} 15 nan",
            f"bogus {job_id} 15 1.0",
        ):
            _forge_stop(server, ns, "s", job_id, request)
            time.sleep(1.5)  # past at least one renewal, which reads the request
            assert holder.poll() is None, (request, holder.stderr.read())
            assert rr.run("-n", "s", "--", "true").returncode == 75  # the key stays held
    finally:
        code = stop(holder)
    err = holder.stderr.read()
    assert "internal error" not in err and "Traceback" not in err, err
    assert code == 0, (code, err)  # its job ends on the SIGTERM singlerun passes on


def test_a_release_after_the_lease_was_lost_leaves_the_next_holders_stop_request(
    rr, redis_server, prefix
):
    """Issue 18: RELEASE deleted the slot's stop request even when the lease was no longer
    ours, erasing a request meant for the next holder."""
    first = rr.start("-n", "s", "--lease-ttl", "1s", "--", "sleep", "30")
    wait_for(lambda: rr.run("status", "-n", "s").returncode == 0, what="first holds")
    first.send_signal(signal.SIGSTOP)  # its lease runs out; its watchdog kills its job
    # A short lease: a waiter looks again every third of it (an expiry sends no message).
    second, _ = rr.start_holder("-n", "s", "--wait-timeout", "10s", "--lease-ttl", "3s")
    job = _holder_job_id(rr, "s")
    db = redis_server.client()
    stop_key = f"{prefix}{{{JobKey('default', 's').stem}}}:stop:0"
    db.set(stop_key, StopRequest("stopped", job, 0, 10.0).encode())  # for the new holder
    first.send_signal(signal.SIGCONT)
    assert first.wait(10) == 125  # it finds its lease lost, and releases
    assert db.get(stop_key) is not None
    stop(second)


def test_a_newcomer_does_not_pass_a_live_waiter_at_the_head_of_the_queue(rr):
    """Issue 18: on Redis a run without --wait took a slot that had just freed while a
    waiter was queued; the head of the queue goes first, as on the other stores."""
    holder, _ = rr.start_holder("-n", "q")
    waiter = rr.start("-n", "q", "--wait", "--", "echo", "waited")
    wait_for(
        lambda: json.loads(rr.run("status", "--json", "-n", "q").stdout)[0]["waiters"],
        what="queued",
    )
    waiter.send_signal(signal.SIGSTOP)  # alive and queued, but slow to take its turn
    assert stop(holder) == 0
    r = rr.run("-n", "q", "--", "echo", "barged")
    assert (r.returncode, r.stdout) == (75, ""), r.stderr
    waiter.send_signal(signal.SIGCONT)
    assert waiter.wait(15) == 0 and waiter.stdout.read() == "waited\n"


def test_wait_timeout_holds_behind_a_dead_holders_lease(rr, postgres_server):
    """Issue 18: PostgreSQL waited out a SIGKILLed holder's whole lease (20 s) whatever
    --wait-timeout said, then ran the job."""
    holder = rr.start("-n", "d", "--lease-ttl", "20s", "--", "sleep", "60")
    wait_for(lambda: rr.run("status", "-n", "d").returncode == 0, what="running")
    holder.kill()  # its session ends; its row's lease keeps the slot for 20 s
    holder.wait()
    t0 = time.monotonic()
    r = rr.run("-n", "d", "--wait-timeout", "2s", "--", "echo", "ran")
    took = time.monotonic() - t0
    assert (r.returncode, r.stdout) == (75, ""), r.stderr
    assert r.stderr.startswith("singlerun: gave up waiting for default/d"), r.stderr
    assert 1.5 < took < 8, took


def test_forged_history_rows_are_skipped_by_every_reader(rr, server, ns):
    """Issue 18.5: a row with a group that is a list, a start of 1e300 or an end that is
    text made `status`, `history`, `check` and `metrics` exit 125 for every user."""
    assert rr.run("-n", "h", "--", "true").returncode == 0
    forged = [
        b'["FORGED1", ["a"], "h", "host", 1, 1000.0, 1001.0, 0, "ok", "[]", 1, ""]',
        b'["FORGED2", "default", "h", "host", 1, 1e300, 1001.0, 0, "ok", "[]", 1, ""]',
        b'["FORGED3", "default", "h", "host", 1, 1000.0, "later", 0, "ok", "[]", 1, ""]',
        b'["FORGED4", "default", "h", "host", -5, 1000.0, 1001.0, 0, "ok", 7, 1, ""]',
    ]
    for i, line in enumerate(forged):
        if server.kind == "redis":
            server.client().xadd(f"{ns}:history", {"run": line + b"\n"})
        else:
            server.sql(
                f'INSERT INTO "{ns}".runs (job_id, "group", name, started_at, line) '
                "VALUES (%s, 'default', 'h', %s, %s)",
                f"FORGED{i + 1}", 2e9 + i, line + b"\n",
            )  # fmt: skip
    for args in (["history", "--json"], ["history", "--summary"], ["status", "--all"],
                 ["check", "-n", "h", "--max-age", "1h"], ["metrics"]):  # fmt: skip
        r = rr.run(*args)
        assert r.returncode == 0, (args, r.stderr)
        # "FORGED": an O, which no ULID (a real job ID) holds; "F1" once matched one.
        assert "internal error" not in r.stderr and "FORGED" not in r.stdout, (args, r.stderr)
    (row,) = json.loads(rr.run("history", "--json").stdout)
    assert row["outcome"] == "ok"


def _waiter_entries(server, ns: str, name: str) -> int:
    stem = JobKey("default", name).stem
    if server.kind == "redis":
        db = server.client()
        return int(db.zcard(f"{ns}:{{{stem}}}:queue")) + int(db.hlen(f"{ns}:{{{stem}}}:waiters"))
    return int(server.sql(f'SELECT count(*) FROM "{ns}".waiters WHERE stem = %s', stem)[0][0])


def test_clean_removes_what_sigkilled_waiters_left(rr, server, ns):
    """Issue 18.7: a SIGKILLed waiter's queue entry and record stayed on the server for ever
    when no other waiter came after it, and `clean` removed neither."""
    holder, _ = rr.start_holder("-n", "w")
    waiter = rr.start("-n", "w", "--wait", "--lease-ttl", "1s", "--", "true")
    wait_for(lambda: _waiter_entries(server, ns, "w") >= 1, what="queued")
    waiter.kill()
    waiter.wait()
    stop(holder)
    assert _waiter_entries(server, ns, "w") >= 1  # nobody came after it to drop it

    def cleaned() -> bool:  # once its ticket lease ran out (Redis; PostgreSQL: at once)
        r = rr.run("clean")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        return _waiter_entries(server, ns, "w") == 0

    wait_for(cleaned, timeout=10, what="the dead waiter's entries cleaned")


def test_a_forged_slot_field_breaks_neither_a_conflict_nor_status_nor_clean(
    rr, redis_server, prefix
):
    """A field of the records hash that is not a slot number (anyone with the password can
    add one) made a conflicting run, `status`, `stop` and `clean` exit 125."""
    holder, _ = rr.start_holder("-n", "f")
    db = redis_server.client()
    base = f"{prefix}{{{JobKey('default', 'f').stem}}}"
    forged = encode(Record("FORGED", "default", "f", 4242, "h", "u", 1.0))
    db.hset(f"{base}:recs", mapping={"abc": forged, "\u00b2": forged})
    db.set(f"{base}:lease:abc", "x")  # "held" as far as the script can tell
    r = rr.run("-n", "f", "--", "true")
    assert r.returncode == 75 and "FORGED" not in r.stderr, r.stderr
    for args in (["status", "--json"], ["clean"]):
        r = rr.run(*args)
        assert r.returncode == 0 and "internal error" not in r.stderr, (args, r.stderr)
    stop(holder)


def test_a_forged_giant_record_or_history_row_is_corrupt_not_read(rr, server, ns, tmp_path):
    """Issue 18.6: a record or history row of 80 MiB (anyone with the server's password can
    write one) is no record singlerun wrote. Readers see a corrupt record and skip the row,
    without reading them: before, every `status` and `history` allocated them (Redis now
    refuses replies over 64 MiB, which would otherwise fail them for everyone)."""
    import sys

    from tests.network.test_fake_servers import MEASURED

    holder, _ = rr.start_holder("-n", "g")
    giant = b"x" * (80 << 20)
    stem = JobKey("default", "g").stem
    if server.kind == "redis":
        db = server.client()
        db.hset(f"{ns}:{{{stem}}}:recs", "0", giant)
        db.xadd(f"{ns}:history", {"run": giant})
    else:
        server.sql(f'UPDATE "{ns}".holders SET record = %s WHERE stem = %s', giant, stem)
        server.sql(
            f'INSERT INTO "{ns}".runs (job_id, "group", name, started_at, line) '
            "VALUES ('G1', 'default', 'g', 2e9, %s)", giant,
        )  # fmt: skip
    del giant
    for args in (["status", "--json", "-n", "g"], ["history", "--json"]):
        r = subprocess.run(
            [sys.executable, "-c", MEASURED, sys.executable, "-m", "singlerun", *args],
            env=rr.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        *lines, peak = r.stderr.splitlines()
        assert (r.returncode, lines) == (0, []), (args, lines)
        assert int(peak) < 150 << 10, (args, peak)  # KiB
    (entry,) = json.loads(rr.run("status", "--json", "-n", "g").stdout)
    assert entry["state"] == "running" and entry["job_id"] is None  # held, record corrupt
    assert json.loads(rr.run("history", "--json").stdout) == []
    stop(holder)


def test_one_off_keys_leave_nothing_for_ever_on_redis(rr, redis_server, prefix):
    """Issue 18.7: 1,500 one-off keys left 1,501 permanent Redis keys (a keys-set entry and
    a fencing counter each). Now a key without a record or a queue leaves the set, its
    counters expire, and only the capped history and the data's epoch have no TTL."""
    for i in range(20):
        assert rr.run("-n", f"once{i}", "--", "true").returncode == 0
    holder, _ = rr.start_holder("-n", "held")
    waiter = rr.start("-n", "held", "--wait", "--lease-ttl", "1s", "--", "true")
    wait_for(lambda: json.loads(rr.run("status", "--json", "-n", "held").stdout)[0]["waiters"])
    waiter.kill()  # its queue entry stays until its ticket expires or `clean` drops it
    waiter.wait()
    db = redis_server.client()
    assert {m.decode() for m in db.smembers(f"{prefix}keys")} == {"default.held"}
    stop(holder)
    # `clean` drops the dead waiter's entry once its ticket (1 s) expired, and the stem.
    wait_for(lambda: rr.run("clean").returncode == 0 and db.scard(f"{prefix}keys") == 0)
    forever = [k.decode() for k in db.keys(f"{prefix}*") if db.pttl(k) == -1]
    assert sorted(forever) == [f"{prefix}epoch", f"{prefix}history"], forever
    r = rr.run("status", "--all", "--json")  # still listed, from the history
    assert len(json.loads(r.stdout)) == 21
