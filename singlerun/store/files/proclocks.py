"""Which files are flock-ed right now, read from /proc/locks (Linux).

This lets `status` tell a held lock from a free one without trying to take it: a probe,
however brief, could make a launcher starting at that instant see the key as taken.
"""

from __future__ import annotations

import os


def held_files() -> set[tuple[int, int]] | None:
    """(st_dev, st_ino) of every file with a granted lock; None if /proc/locks is unreadable."""
    try:
        with open("/proc/locks", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    held = set()
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; "1: -> FLOCK ..." is a waiter.
        if len(parts) < 6 or parts[1] == b"->":
            continue
        try:
            major, minor, inode = parts[5].split(b":")
            held.add((os.makedev(int(major, 16), int(minor, 16)), int(inode)))
        except ValueError:
            continue
    return held
