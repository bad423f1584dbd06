"""`status` on filesystems where stat() and /proc/locks disagree on the device (issue 24.3):
a btrfs subvolume and an overlay, mounted for real, and a capture of btrfs's /proc files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from singlerun.store.files import proclocks
from tests.conftest import Singlerun, stop

# Captured on this machine: a lock directory in subvolume `sub` of a btrfs mounted at
# /tmp/btm. stat() gave the directory st_dev 0x2a (the subvolume's); /proc/locks and
# mountinfo name the filesystem's 0:40 (00:28 in hex).
BTRFS_LOCKS = b"1: FLOCK  ADVISORY  WRITE 5794 00:28:259 0 EOF\n"
BTRFS_FDINFO = b"pos:\t0\nflags:\t02100000\nmnt_id:\t46\nino:\t258\n"
BTRFS_MOUNTINFO = (
    b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
    b"46 27 0:40 / /tmp/btm rw,relatime - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n"
)


def test_captured_btrfs_lock_is_matched_through_mountinfo():
    stat_dev = os.makedev(0, 0x2A)
    locks = proclocks.held(BTRFS_LOCKS)
    assert (stat_dev, 259) not in locks  # what matching by stat()'s device saw: nothing held
    dev = proclocks.mount_device(BTRFS_FDINFO, BTRFS_MOUNTINFO)
    assert dev == os.makedev(0, 40) and (dev, 259) in locks


def test_unreadable_or_odd_mountinfo_gives_no_device():
    assert proclocks.mount_device(b"pos:\t0\n", BTRFS_MOUNTINFO) is None
    assert proclocks.mount_device(BTRFS_FDINFO, b"46 27 zz / /x - btrfs\n") is None
    assert proclocks.held(b"1: -> FLOCK  ADVISORY  WRITE 1 00:28:259 0 EOF\nbad line\n") == set()


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"this kernel or container cannot mount it: {r.stderr.strip()}")


@pytest.fixture
def btrfs_subvolume(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("mkfs.btrfs"):
        pytest.skip("needs root and btrfs-progs (./run-tests installs it)")
    image, top = tmp_path / "btrfs.img", tmp_path / "btrfs"
    with image.open("wb") as f:
        f.truncate(128 << 20)  # btrfs's smallest comfortable size; sparse
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    top.mkdir()
    _mount("-o", "loop", str(image), str(top))
    try:
        subprocess.run(["btrfs", "subvolume", "create", str(top / "sub")], check=True,
                       capture_output=True)  # fmt: skip
        yield top / "sub"
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for part in ("lower", "upper", "work", "merged"):
        (tmp_path / part).mkdir()
    merged = tmp_path / "merged"
    layers = f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work"
    _mount("-t", "overlay", "overlay", "-o", layers, str(merged))
    try:
        yield merged
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


@pytest.mark.parametrize("fs", ["btrfs_subvolume", "overlay"])
def test_status_sees_a_held_lock(fs: str, request: pytest.FixtureRequest):
    root: Path = request.getfixturevalue(fs)
    lock_dir = root / "locks"
    lock_dir.mkdir(mode=0o700)
    sr = Singlerun(lock_dir)
    if fs == "btrfs_subvolume":  # the case this test is about: the devices differ
        assert os.stat(lock_dir).st_dev != _mount_dev(lock_dir)
    holder, _ = sr.start_holder("-n", "a")
    r = sr.run("status", "--json", "-n", "a")
    (state,) = json.loads(r.stdout)
    assert (r.returncode, state["state"], state["pid"]) == (0, "running", holder.pid), r.stderr
    assert sr.run("-n", "a", "--", "true").returncode == 75  # and the lock itself holds
    stop(holder)
    r = sr.run("status", "--json", "-n", "a")
    assert json.loads(r.stdout)[0]["state"] == "idle"


def _mount_dev(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as a, open("/proc/self/mountinfo", "rb") as b:
            return proclocks.mount_device(a.read(), b.read())
    finally:
        os.close(fd)
