"""Records left by dead runs, and unreadable ones, are reclaimed with one warning line."""

import os
import subprocess

import pytest

from singlerun.keys import JobKey
from singlerun.record import Record, encode
from tests.conftest import stop


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _record_path(lock_dir, name="k"):
    return lock_dir / f"{JobKey('default', name).stem}.rec"


def test_dead_holder_is_reclaimed_with_a_warning(sr):
    pid = _dead_pid()
    dead = Record(
        job_id="01DEADJOB",
        group="default",
        name="k",
        pid=pid,
        host="h",
        user="u",
        started_at=1_700_000_000.0,
        pid_started=1.0,
    )
    _record_path(sr.lock_dir).write_bytes(encode(dead))
    r = sr.run("-n", "k", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (0, "ran\n")
    assert r.stderr == (
        "singlerun: default/k: reclaimed a stale lock: job 01DEADJOB "
        f"(pid {pid}, started 2023-11-14T22:13:20Z) is gone\n"
    )
    assert not _record_path(sr.lock_dir).exists()


def test_record_of_a_live_but_unrelated_process_is_still_stale(sr):
    # The kernel lock is the truth: our own PID is alive, but it does not hold the lock.
    rec = Record(
        job_id="01REUSED",
        group="default",
        name="k",
        pid=os.getpid(),
        host="h",
        user="u",
        started_at=1_700_000_000.0,
        pid_started=1.0,
    )
    _record_path(sr.lock_dir).write_bytes(encode(rec))
    r = sr.run("-n", "k", "--", "true")
    assert r.returncode == 0 and "reclaimed a stale lock: job 01REUSED" in r.stderr


VALID = encode(
    Record(job_id="01X", group="default", name="k", pid=1, host="h", user="u", started_at=1.0)
)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        VALID[:10],
        VALID[:-5],
        b"\x00\xff" * 300,
        b"garbage\n",
        b"singlerun-record 99\n{}\n",
        b"singlerun-record 1\n[1,2]\n",
        os.urandom(70_000),
    ],
    ids=[
        "empty",
        "truncated-header",
        "truncated-body",
        "binary",
        "garbage",
        "future-version",
        "wrong-type",
        "huge",
    ],
)
def test_corrupt_records_are_reclaimed_without_traceback(sr, content):
    _record_path(sr.lock_dir).write_bytes(content)
    r = sr.run("-n", "k", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    assert r.stderr == (
        "singlerun: default/k: reclaimed a stale lock whose record was "
        "unreadable (empty, truncated or corrupt)\n"
    )


def test_corrupt_record_of_a_held_lock_still_conflicts(sr):
    holder, _ = sr.start_holder("-n", "k")
    _record_path(sr.lock_dir).write_bytes(b"garbage")
    r = sr.run("-n", "k", "--", "true")
    assert r.returncode == 75
    assert r.stderr == (
        "singlerun: default/k is already running (its holder's record is missing or corrupt)\n"
    )
    stop(holder)


@pytest.mark.parametrize("pid", [-1, 0, 1 << 22 + 1, 10**30])
def test_a_record_naming_an_impossible_pid_is_corrupt(sr, pid):
    """Issue 20: pid -1 or 0 (which kill() reads as "every process" or "my group") or one
    beyond PID_MAX_LIMIT was an internal error; it is a corrupt record, as any other."""
    holder, _ = sr.start_holder("-n", "k")
    rec = _record_path(sr.lock_dir)
    text = rec.read_text()
    rec.write_text(text.replace(f'"pid":{holder.pid},', f'"pid":{pid},', 1))
    assert f'"pid":{pid},' in rec.read_text()
    r = sr.run("-n", "k", "--", "true")
    assert r.returncode == 75, r.stderr
    assert "record is missing or corrupt" in r.stderr and r.stderr.count("\n") == 1
    r = sr.run("status", "--json", "-n", "k")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert '"job_id": null' in r.stdout
    r = sr.run("clean")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    r = sr.run("stop", "-n", "k", "--timeout", "2s")
    assert r.returncode in (1, 3) and "Traceback" not in r.stderr, r.stderr
    assert holder.poll() is None  # nothing was signalled on the word of that record
    stop(holder)


def test_a_live_holder_is_never_stale_however_old(sr):
    holder, _ = sr.start_holder("-n", "k")
    rec = _record_path(sr.lock_dir)
    os.utime(rec, (0, 0))
    assert sr.run("-n", "k", "--", "true").returncode == 75
    stop(holder)
