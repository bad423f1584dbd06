"""Hostile directories, resource faults and signal storms: one `singlerun: ` line and the
documented exit status, or the documented degradation; the key is never left locked
without a running job."""

import contextlib
import os
import random
import re
import resource
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from singlerun.keys import JobKey
from tests.conftest import read_line, records, wait_for
from tests.torture.report import FIGURES


def _key_is_free(sr, name="k"):
    r = sr.run("-q", "-n", name, "--", "true")
    assert r.returncode == 0, r.stderr


def _limited(kind, value):
    def set_limit():
        resource.setrlimit(kind, (value, value))

    return set_limit


def test_record_cannot_be_written(sr):
    FIGURES["bad inputs: resource faults"] += 1
    r = sr.run("-n", "k", "--", "echo", "ran", preexec_fn=_limited(resource.RLIMIT_FSIZE, 100))
    assert (r.returncode, r.stdout) == (125, "")
    assert r.stderr == (
        f"singlerun: cannot write the record {sr.lock_dir}/"
        f"{JobKey('default', 'k').stem}.rec: File too large\n"
    )
    assert not list(sr.lock_dir.glob("*.tmp"))
    _key_is_free(sr)


@pytest.fixture
def full_fs(tmp_path):
    """A 256 KiB tmpfs filled to the last byte (skipped where mounting is not allowed)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k,mode=700", "tmpfs", str(mnt)],
            capture_output=True,
        ).returncode
        != 0
    ):
        pytest.skip("this machine does not allow mounting a tmpfs (RLIMIT_FSIZE covers it)")
    try:
        (mnt / "locks").mkdir(mode=0o700)
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):  # until ENOSPC
            while os.write(fd, b"x" * 4096):
                pass
        os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_file_system(sr, full_fs):
    FIGURES["bad inputs: resource faults"] += 1
    locks = full_fs / "locks"
    r = sr.run("--lock-dir", str(locks), "-n", "k", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (125, ""), r.stderr
    assert r.stderr == (
        f"singlerun: cannot write the record {locks}/"
        f"{JobKey('default', 'k').stem}.rec: No space left on device\n"
    )
    (full_fs / "filler").unlink()  # room again: the key was not left locked
    r = sr.run("--lock-dir", str(locks), "-n", "k", "--", "echo", "ran")
    assert (r.returncode, r.stdout, r.stderr) == (0, "ran\n", "")


@pytest.mark.parametrize("limit", [5, 6, 8, 12])
def test_few_file_descriptors(sr, limit):
    FIGURES["bad inputs: resource faults"] += 1
    r = sr.run("-n", "k", "--", "echo", "ran", preexec_fn=_limited(resource.RLIMIT_NOFILE, limit))
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") <= 1 and (not r.stderr or r.stderr.startswith("singlerun: "))
    assert (r.returncode, r.stdout) in ((0, "ran\n"), (125, ""))
    _key_is_free(sr)


def test_memory_limits_never_give_a_traceback_or_a_wrong_status(sr):
    for mb in range(20, 34):
        FIGURES["bad inputs: resource faults"] += 1
        r = sr.run(
            "-n", "k", "--", "sh", "-c", "exit 7", preexec_fn=_limited(resource.RLIMIT_AS, mb << 20)
        )
        if "Fatal Python error" in r.stderr:  # the interpreter itself could not start
            continue
        assert "Traceback" not in r.stderr, (mb, r.stderr)
        # 7: the job ran; 125: singlerun could not go on; 126: spawning the job failed
        # (ENOMEM), which timeout(1) and env(1) report as 126 too.
        assert r.returncode in (7, 125, 126), (mb, r.returncode, r.stderr)
        lines = r.stderr.splitlines()
        assert all(line.startswith("singlerun: ") for line in lines), r.stderr
        assert len([line for line in lines if " warning: " not in line]) <= 1, r.stderr
    _key_is_free(sr)


def test_ledger_locked_longer_than_its_busy_timeout(sr):
    FIGURES["bad inputs: resource faults"] += 1
    assert sr.run("-n", "k", "--", "true").returncode == 0
    assert sr.run("history").returncode == 0
    db = sqlite3.connect(sr.lock_dir / "history.db", isolation_level=None)
    db.executescript("CREATE TABLE IF NOT EXISTS x (a); BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        r = sr.run("-n", "k", "--", "sh", "-c", "exit 3", timeout=60)
        took = time.monotonic() - t0
    finally:
        db.execute("ROLLBACK")
        db.close()
    # A run only appends to the journal: a wedged ledger neither delays nor troubles it.
    assert (r.returncode, r.stderr) == (3, "")
    assert took < 4  # well under the ledger's 5 s busy timeout
    _key_is_free(sr)


def test_lock_directory_disappears_while_the_job_runs(sr):
    FIGURES["bad inputs: hostile directories"] += 1
    r = sr.run("-n", "k", "--", "sh", "-c", f"rm -rf {sr.lock_dir}; exit 4")
    assert r.returncode == 4
    assert r.stderr == (
        f"singlerun: warning: the lock directory {sr.lock_dir} disappeared while the job ran; "
        "the run itself is unaffected\n"
    )
    _key_is_free(sr)  # the directory is made again


@pytest.mark.parametrize("what", ["lock", "rec", "queue", "history"])
def test_symlink_planted_at_every_path(sr, tmp_path, what):
    FIGURES["bad inputs: hostile directories"] += 1
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    stem = JobKey("default", "k").stem
    name = {
        "lock": f"{stem}.lock",
        "rec": f"{stem}.rec",
        "queue": f"{stem}.queue",
        "history": "history.db",
    }[what]
    (sr.lock_dir / name).symlink_to(victim)
    holder = None
    if what == "queue":  # the queue is only used by a waiter
        holder, _ = sr.start_holder("-n", "k")
        r = sr.run("-n", "k", "--wait-timeout", "0.5", "--", "true")
    else:
        r = sr.run("-n", "k", "--", "true")
    assert "Traceback" not in r.stderr and r.stderr.count("\n") <= 1, r.stderr
    assert r.returncode in (0, 125), r.stderr
    assert victim.read_text() == "precious\n"
    if holder:
        holder.send_signal(signal.SIGTERM)
        holder.wait(10)


def test_signal_storm(sr):
    job = (
        "trap '' USR1 USR2 HUP WINCH; echo ready; i=0; "
        "while [ $i -lt 40 ]; do sleep 0.05; i=$((i+1)); done; exit 42"
    )
    holder = sr.start("-n", "storm", "--", "sh", "-c", job)
    assert read_line(holder) == "ready"
    wait_for(lambda: re.search(r'"child_pid":\d', records(sr.lock_dir)), what="job recorded")
    rng = random.Random(1)
    sigs = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGWINCH)
    sent = 0

    def storm():
        nonlocal sent
        for _ in range(1000):
            try:
                os.kill(holder.pid, rng.choice(sigs))
                sent += 1
            except ProcessLookupError:
                return

    t = threading.Thread(target=storm)
    t.start()
    t.join()
    FIGURES["signals in storms"] += sent
    assert sent == 1000
    assert holder.wait(30) == 42
    assert "Traceback" not in holder.stderr.read()
    _key_is_free(sr, "storm")
