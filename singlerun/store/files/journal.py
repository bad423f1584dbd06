"""The journal a finished run appends its row to: `history.log` in the lock directory.

A run's row goes to the journal, one JSON line in one O_APPEND write under a shared flock:
no sqlite3 on the run path (importing it, opening the database and inserting cost ~6 ms, a
tenth of a run). Once the journal is large, the run that finds it so folds it into the
sqlite3 ledger (ledger.py) under an exclusive flock; readers read both. The history is a
record, not a gate: a run whose row cannot be written still ran (the caller warns).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import TYPE_CHECKING

from singlerun.history import Run, journal_line

if TYPE_CHECKING:
    from singlerun.store.files.lockdir import LockDir

JOURNAL = "history.log"  # key files all end in .lock/.rec/.queue/.stop: no clash
FOLD_AT = 64 * 1024  # journal bytes past which a run folds it into the ledger


def lock_within(fd: int, operation: int, wait: float = 3.0) -> None:
    """flock(fd, operation) within `wait` seconds, else OSError: a fold holds the journal's
    exclusive lock for milliseconds, and whoever holds it longer (another member of a shared
    directory) must keep neither a finishing run nor `clean` waiting."""
    import time

    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                raise OSError(errno.EWOULDBLOCK, f"still locked after {wait:g} s") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def append(lock_dir: LockDir, runs: tuple[Run, ...]) -> bool:
    """Add rows to the journal (one write); True if it is now large enough to be folded into
    the ledger."""
    data = b"".join(journal_line(run) for run in runs)
    try:
        fd = lock_dir.open(JOURNAL, os.O_WRONLY | os.O_APPEND, create=True)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a planted FIFO or device
                raise OSError(errno.EINVAL, "not a regular file")
            lock_within(fd, fcntl.LOCK_SH)  # a fold (LOCK_EX) reads and empties it
            if os.write(fd, data) != len(data):
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))  # a file size limit
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
    except OSError as exc:
        raise lock_dir.error("write the run history", JOURNAL, exc) from None
    return size >= FOLD_AT
