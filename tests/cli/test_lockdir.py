"""The lock directory is private and never lets singlerun follow a planted symlink."""

import os
import stat

import pytest

from singlerun.keys import JobKey

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
