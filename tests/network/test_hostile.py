"""A lock server is not a trusted party (issue 18, docs/CONTRACT.md §6): what is read from Redis or
PostgreSQL never steers a signal, and data a hostile user of the server writes can neither
crash a holder's singlerun nor free its key while its job runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time

import psutil

from singlerun.keys import JobKey
from singlerun.record import Record, encode
from tests.conftest import stop


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
        _forge_record(server, ns, "d", dataclasses.replace(forged, job_id=_holder_job_id(rr, "d")))
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
