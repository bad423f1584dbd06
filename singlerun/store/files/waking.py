"""How a waiter at the head of the queue sleeps until a slot may be free, using no CPU:
in flock(LOCK_SH) on the one lock file, or for several slots on inotify's reports of
each lock file's final close."""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from singlerun.store.files.inotify import CloseWatch
    from singlerun.store.files.lockdir import LockDir


def _maybe_free(lock_dir: LockDir, names: list[str]) -> bool:
    """Whether some slot looks free: a shared flock on a read-only descriptor, dropped at
    once. Unlike a try to lock (read-write), closing it is no close-after-write,
    so it wakes no waiter watching the directory (ourselves included). /proc/locks
    would tell too, but reading it took up to 15 ms while a holder was exiting."""
    for name in names:
        try:
            fd = lock_dir.open(name, os.O_RDONLY)
        except OSError:
            return True  # no lock file yet: free; anything else, the try to lock will say
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
    return False


def sleep_until_free(lock_dir: LockDir, names: list[str], watch: CloseWatch | None) -> None:
    """Return once one of the lock files `names` may be free."""
    if watch is not None:  # several slots: inotify reports each final close of a lock file
        while not _maybe_free(lock_dir, names):
            watch.wait(set(names))
        return
    name = names[0]
    # Polling for a held lock would cost CPU and latency; flock(LOCK_SH) on our own
    # descriptor sleeps in the kernel until the holder lets go, which costs no CPU and
    # wakes us at once. We drop it right away and race for the real lock.
    try:
        fd = lock_dir.open(name, os.O_RDONLY)
    except OSError as exc:
        raise lock_dir.error("open the lock file", name, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def watch(lock_dir: LockDir, slots: int) -> CloseWatch | None:
    if slots == 1:
        return None
    from singlerun.store.files.inotify import CloseWatch

    try:
        return CloseWatch(lock_dir.at())
    except OSError as exc:
        raise lock_dir.error("watch", "", exc) from None
