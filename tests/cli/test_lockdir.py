"""The lock directory is private and never lets singlerun follow a planted symlink."""

import os
import stat

import pytest

from singlerun.keys import JobKey
from tests.conftest import stop

STEM = JobKey("default", "k").stem


def _refused(sr, d, why):
    r = sr.run("--lock-dir", str(d), "-n", "k", "--", "touch", str(d.parent / "ran"))
    assert r.returncode == 125, r
    assert r.stderr.startswith("singlerun: refusing lock directory") and why in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (d.parent / "ran").exists()


def test_symlinked_directory_is_refused(sr, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    _refused(sr, tmp_path / "link", "symbolic link")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away takes root")
def test_directory_of_another_user_is_refused(sr, tmp_path):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    _refused(sr, d, "owned by uid 65534")


def test_world_writable_without_sticky_bit_is_refused(sr, tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    _refused(sr, d, "writable by others without the sticky bit")
    d.chmod(0o1777)  # like /tmp: accepted
    assert sr.run("--lock-dir", str(d), "-n", "k", "--", "true").returncode == 0


def test_not_a_directory_is_refused(sr, tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    _refused(sr, f, "not a directory")


def test_default_directory_comes_from_the_uid_alone(sr, tmp_path):
    """Runs under different XDG_RUNTIME_DIR, TMPDIR and HOME (set, unset, odd) share
    /tmp/singlerun-UID and so exclude each other."""
    import subprocess
    import uuid

    from tests.conftest import PRINT_SIGNALS, SINGLERUN, read_line

    base = {k: v for k, v in sr.env.items() if k not in ("SINGLERUN_LOCK_DIR", "XDG_RUNTIME_DIR")}
    name = f"default-dir-{uuid.uuid4().hex[:8]}"
    (tmp_path / "xdg").mkdir()
    holder_env = {**base, "XDG_RUNTIME_DIR": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path)}
    holder = subprocess.Popen(
        [*SINGLERUN, "-n", name, "--", *PRINT_SIGNALS, "TERM"],
        env=holder_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(holder).startswith("ready")
        for odd in (
            {},
            {"XDG_RUNTIME_DIR": "relative/dir"},
            {"TMPDIR": "/nonexistent", "HOME": "/"},
            {"XDG_RUNTIME_DIR": str(tmp_path), "TMPDIR": "", "HOME": str(tmp_path)},
        ):
            env = {k: v for k, v in base.items() if k not in ("TMPDIR", "HOME")} | odd
            r = subprocess.run(
                [*SINGLERUN, "-n", name, "--", "true"], env=env, capture_output=True, text=True
            )
            assert r.returncode == 75, (odd, r.stderr)
        d = f"/tmp/singlerun-{os.geteuid()}"
        assert os.path.exists(f"{d}/default.{name}.lock")
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        assert not (tmp_path / "xdg" / "singlerun").exists()
    finally:
        holder.terminate()
        holder.wait(10)


@pytest.mark.parametrize("suffix", [".lock", ".rec"])
def test_planted_symlink_is_never_followed(sr, tmp_path, suffix):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (sr.lock_dir / f"{STEM}{suffix}").symlink_to(victim)
    r = sr.run("-n", "k", "--", "true")
    if suffix == ".lock":
        assert r.returncode == 125 and "symbolic link" in r.stderr, r.stderr
    else:  # a symlink where the record goes reads as a corrupt record and is replaced
        assert r.returncode == 0, r.stderr
        assert not (sr.lock_dir / f"{STEM}{suffix}").is_symlink()
    assert victim.read_text() == "precious\n"
    assert "Traceback" not in r.stderr


def test_fifo_at_record_path_does_not_hang(sr):
    os.mkfifo(sr.lock_dir / f"{STEM}.rec")
    r = sr.run("-n", "k", "--", "true", timeout=10)
    assert r.returncode == 0 and "unreadable" in r.stderr


def test_unwritable_lock_directory_fails_cleanly(sr, tmp_path):
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere, but not into procfs
        d = "/proc/sys"
    r = sr.run("--lock-dir", str(d), "-n", "k", "--", "true")
    assert r.returncode == 125, r
    assert (
        r.stderr.startswith("singlerun: cannot ")
        and "lock file" in r.stderr
        and r.stderr.count("\n") == 1
    )


def test_fifo_at_lock_path_is_refused_without_blocking(sr):
    os.mkfifo(sr.lock_dir / f"{STEM}.lock")
    r = sr.run("-n", "k", "--", "echo", "ran", timeout=10)
    assert r.returncode == 125 and r.stdout == "", r.stderr
    assert (
        r.stderr
        == f"singlerun: refusing lock file {sr.lock_dir}/{STEM}.lock: it is not a regular file\n"
    )


def test_a_directory_swapped_while_the_job_runs_is_never_written(sr, tmp_path):
    # The directory is checked once and used through its descriptor: replacing it by a
    # symlink to another directory mid-run redirects nothing (record removal, history).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / f"{STEM}.rec").write_text("precious\n")
    holder, _ = sr.start_holder("-n", "k")
    moved = tmp_path / "moved"
    sr.lock_dir.rename(moved)
    sr.lock_dir.symlink_to(elsewhere)
    holder.terminate()
    holder.wait(10)
    assert sorted(p.name for p in elsewhere.iterdir()) == [f"{STEM}.rec"]
    assert (elsewhere / f"{STEM}.rec").read_text() == "precious\n"
    assert not (moved / f"{STEM}.rec").exists()  # its own record went, from the real place
    assert "default" in (moved / "history.log").read_text()


def _snapshot(d):
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in d.iterdir()}


def test_status_and_history_are_read_only(sr):
    from singlerun.store.files.journal import FOLD_AT

    arg = "x" * 2000
    while not (sr.lock_dir / "history.db").exists():  # fill the journal until it is folded
        assert sr.run("-n", "k", "--", "true", arg).returncode == 0
        assert (sr.lock_dir / "history.log").stat().st_size < FOLD_AT + 4096
    assert sr.run("-n", "k", "--", "true").returncode == 0  # a row in the journal too
    before = _snapshot(sr.lock_dir)
    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json")):
        r = sr.run(*args)
        assert r.returncode == 0 and "k" in r.stdout, r.stderr
    assert _snapshot(sr.lock_dir) == before  # no -wal, -shm or -journal; nothing rewritten
    r = sr.run("history", "--json", "-n", "k")
    assert len(__import__("json").loads(r.stdout)) > 30


def test_a_ledger_left_in_wal_mode_is_read_and_converted(sr):
    import sqlite3

    assert sr.run("-n", "k", "--", "true").returncode == 0
    db = sqlite3.connect(sr.lock_dir / "history.db")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(
        'CREATE TABLE runs (job_id TEXT PRIMARY KEY, "group" TEXT NOT NULL, name TEXT NOT NULL,'
        " host TEXT NOT NULL, pid INTEGER NOT NULL, started_at REAL NOT NULL, ended_at REAL,"
        " exit_status INTEGER, outcome TEXT NOT NULL, command TEXT NOT NULL)"
    )
    db.execute("INSERT INTO runs VALUES ('OLD', 'default', 'k', 'h', 1, 1.0, 2.0, 0, 'ok', '[]')")
    db.commit()
    db.close()
    r = sr.run("history", "--json", "-n", "k")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert [run["job_id"] for run in __import__("json").loads(r.stdout)][-1] == "OLD"
    assert not list(sr.lock_dir.glob("history.db-*"))
    before = _snapshot(sr.lock_dir)
    assert sr.run("history", "-n", "k").returncode == 0
    assert _snapshot(sr.lock_dir) == before


def test_stop_signals_even_when_its_note_cannot_be_written(sr):
    holder, _ = sr.start_holder("-n", "k")
    (sr.lock_dir / f"{STEM}.stop").mkdir()  # the note's rename onto it fails
    r = sr.run("stop", "-n", "k", "--timeout", "10s")
    assert r.returncode == 0, r.stderr
    assert holder.wait(10) == 0  # the job got SIGTERM and exited by itself


def test_the_directory_is_locked_while_a_key_is_held(sr):
    """Issue 24: systemd-tmpfiles ages /tmp out after 10 days and skips a directory it
    cannot lock; without a lock on it, an old lock file under a running job could go, and
    a second instance then run."""
    import subprocess

    def cleaner_may_lock() -> bool:  # as systemd-tmpfiles asks: exclusive, not waiting
        return subprocess.run(["flock", "-n", "-x", str(sr.lock_dir), "true"]).returncode == 0

    assert cleaner_may_lock()
    holder, _ = sr.start_holder("-n", "t")
    assert not cleaner_may_lock()
    stop(holder)
    assert cleaner_may_lock()


def test_a_planted_lock_file_with_a_non_ascii_slot_number_is_ignored(sr):
    """`"²".isdigit()` is true but `int("²")` fails: a file a member of a shared directory
    plants as `k@².lock` made `status` an internal error for everyone."""
    for name in ("k@\u00b2.lock", "k@\u0663.rec", "k@1x.lock"):
        (sr.lock_dir / name).write_text("")
    r = sr.run("status", "--all")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert sr.run("-n", "k", "--", "true").returncode == 0
