"""Which files in the lock directory are flock-ed right now, read from /proc/locks (Linux).

This lets `status` tell a held lock from a free one without trying to take it: a probe,
however brief, could make a launcher starting at that instant see the key as taken.

/proc/locks names a file by its superblock's device, which is not always what stat()
reports: on btrfs every subvolume has its own anonymous st_dev, and stat() of an overlay
may report a layer's. The superblock's device is the one /proc/self/mountinfo gives the
mount, so a lock counts as ours if its device is either (util-linux's lslocks and lsfd met
the same). On btrfs, inode numbers repeat across subvolumes of one filesystem, so a lock
on another subvolume's file with one of our inode numbers makes a free slot look held:
the safe way to be wrong, and the price of never probing.
"""

from __future__ import annotations

import os


def held_inodes(dir_fd: int) -> set[int] | None:
    """Inodes with a granted lock on the filesystem of `dir_fd`; None if /proc is unreadable
    (callers then take every lock as held)."""
    try:
        with open("/proc/locks", "rb") as f:
            locks = f.read()
        with open(f"/proc/self/fdinfo/{dir_fd}", "rb") as f:
            fdinfo = f.read()
        with open("/proc/self/mountinfo", "rb") as f:
            mountinfo = f.read()
    except OSError:
        return None
    devices = {os.fstat(dir_fd).st_dev, mount_device(fdinfo, mountinfo)}
    return {inode for dev, inode in held(locks) if dev in devices}


def held(locks: bytes) -> set[tuple[int, int]]:
    """(device, inode) of every granted lock in /proc/locks' text."""
    found = set()
    for line in locks.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; "1: -> FLOCK ..." is a waiter.
        if len(parts) < 6 or parts[1] == b"->":
            continue
        try:
            major, minor, inode = parts[5].split(b":")
            found.add((os.makedev(int(major, 16), int(minor, 16)), int(inode)))
        except ValueError:
            continue
    return found


def mount_device(fdinfo: bytes, mountinfo: bytes) -> int | None:
    """The device mountinfo gives the mount a descriptor is on (its fdinfo's mnt_id)."""
    mnt_id = next(
        (line.split()[1] for line in fdinfo.splitlines() if line.startswith(b"mnt_id:")), None
    )
    for line in mountinfo.splitlines():
        # "46 27 0:40 / /tmp/btm rw,relatime - btrfs /dev/loop0 rw,..."
        fields = line.split()
        if len(fields) > 2 and fields[0] == mnt_id:
            try:
                major, minor = fields[2].split(b":")
                return os.makedev(int(major), int(minor))
            except ValueError:
                return None
    return None
