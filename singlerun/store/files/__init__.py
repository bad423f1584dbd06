"""The embedded store: one flock-ed lock file per key slot, beside its holder record.

The kernel lock is the truth: it is free exactly when no process holds it, whatever the
records say. Lock files are never deleted (unlinking a locked file would split contenders
across inodes). Every path is opened without following symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import filelock

from singlerun.errors import LockBusy, StoreError, WaitTimeout
from singlerun.keys import MAX_SLOTS, JobKey, KeyFilter
from singlerun.record import MAX_SIZE, Record, encode, parse
from singlerun.store import Lease, Reclaimed

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.ledger import Ledger
    from singlerun.store.files.inotify import CloseWatch
    from singlerun.store.protocol import KeyState, Renewal

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _store_error(action: str, path: str, exc: OSError) -> StoreError:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
        return StoreError(f"refusing to {action} {path}: it is a symbolic link")
    return StoreError(f"cannot {action} {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def _deadline_alarm(key: JobKey, deadline: float | None) -> Iterator[None]:
    """Interrupt a sleeping flock() with WaitTimeout once `deadline` (monotonic) passes."""
    if deadline is None:
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise WaitTimeout(key, [])

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(key, [])
        signal.setitimer(signal.ITIMER_REAL, remaining)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class _Held:
    """A lease's private state: its lock, and the inode of the record it published."""

    lock: filelock.FileLock
    record_inode: int | None = None


class FileStore:
    """Locks in a local directory (SPEC §6's embedded store)."""

    def __init__(self, lock_dir: str) -> None:
        self.lock_dir = lock_dir
        self.location = lock_dir  # for messages
        self._locks: dict[str, tuple[filelock.FileLock, list[int]]] = {}
        self._ledger: Ledger | None = None
        self._watches: list[CloseWatch] = []  # closed in release(), off the handoff path

    def _path(self, key: JobKey, slot: int, suffix: str) -> str:
        slot_part = f"@{slot}" if slot else ""
        return os.path.join(self.lock_dir, f"{key.stem}{slot_part}{suffix}")

    # -- records --------------------------------------------------------------------------

    def _read(self, path: str) -> bytes | None:
        """The file's bytes, None if there is none; never follows a symlink or blocks on a FIFO."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return b""  # a planted symlink reads as a corrupt record
            raise _store_error("read", path, exc) from None
        try:
            return os.read(fd, MAX_SIZE) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)

    def _record(self, key: JobKey, slot: int) -> Record | None:
        data = self._read(self._path(key, slot, ".rec"))
        return parse(data) if data else None

    def _slots(self, key: JobKey) -> Iterator[int]:
        """The slots of `key` that have files: they are numbered from 0 without gaps."""
        for slot in range(MAX_SLOTS):
            if not os.path.lexists(self._path(key, slot, ".lock")) and not os.path.lexists(
                self._path(key, slot, ".rec")
            ):
                return
            yield slot

    def holders(self, key: JobKey, slots: int) -> list[Record]:
        return [r for slot in range(slots) if (r := self._record(key, slot)) is not None]

    def _write(self, path: str, data: bytes, what: str) -> int:
        """Replace `path` atomically (temp file + rename); return the new file's inode."""
        tmp = f"{path}.{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o644)
            try:
                if os.write(fd, data) != len(data):  # a file size limit cuts writes short
                    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            os.rename(tmp, path)  # replaces a planted symlink instead of following it
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _store_error(f"write {what}", path, exc) from None
        return inode

    def publish(self, lease: Lease, record: Record) -> None:
        path = self._path(lease.key, lease.slot, ".rec")
        lease.handle.record_inode = self._write(path, encode(record), "the record")

    # -- acquiring --------------------------------------------------------------------------

    def _lock(self, path: str) -> tuple[filelock.FileLock, list[int]]:
        # One lock object per slot, so a waiter that wakes only has to acquire it.
        if path not in self._locks:
            fds: list[int] = []
            lock = filelock.FileLock(
                path, thread_local=False, blocking=False, on_acquired=fds.append
            )
            self._locks[path] = (lock, fds)
        return self._locks[path]

    def _try_slot(self, key: JobKey, slot: int, token: str) -> Lease | None:
        path = self._path(key, slot, ".lock")
        lock, fds = self._lock(path)
        try:
            lock.acquire()
        except filelock.Timeout:
            if os.path.lexists(path):
                return None  # held by another process
            # filelock reads ENOENT from a create as a transient NFS/FUSE race, so it reports
            # contention; with no lock file there is no holder, so find out what is wrong.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC))
            except OSError as exc:
                raise _store_error("create the lock file", path, exc) from None
            return self._try_slot(key, slot, token)
        except OSError as exc:
            raise _store_error("open the lock file", path, exc) from None
        # We hold the lock, so a record still there was left by a run that died.
        leftover = self._read(self._path(key, slot, ".rec"))
        reclaimed = None if leftover is None else Reclaimed(parse(leftover))
        return Lease(key, slot, token, None, fds[-1], reclaimed, _Held(lock))

    def _try_any(self, key: JobKey, slots: int, token: str) -> Lease | None:
        for slot in range(slots):
            if lease := self._try_slot(key, slot, token):
                return lease
        return None

    def _maybe_free(self, key: JobKey, slots: int) -> bool:
        """Whether some slot looks free: a shared flock on a read-only descriptor, dropped at
        once. Unlike a try through filelock (read-write), closing it is no close-after-write,
        so it wakes no waiter watching the directory (ourselves included). /proc/locks
        would tell too, but reading it took up to 15 ms while a holder was exiting."""
        for slot in range(slots):
            try:
                fd = os.open(self._path(key, slot, ".lock"), _READ_FLAGS)
            except OSError:
                return True  # no lock file yet: free; anything else, filelock will say
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue
            finally:
                os.close(fd)
        return False

    def _sleep_until_free(self, key: JobKey, slots: int, watch: CloseWatch | None) -> None:
        if watch is not None:  # several slots: inotify reports each final close of a lock file
            names = {os.path.basename(self._path(key, slot, ".lock")) for slot in range(slots)}
            while not self._maybe_free(key, slots):
                watch.wait(names)
            return
        path = self._path(key, 0, ".lock")
        # filelock only polls for a held lock (poll_interval); flock(LOCK_SH) on our own
        # descriptor sleeps in the kernel until the holder lets go, which costs no CPU and
        # wakes us at once. We drop it right away and race for the real lock.
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            raise _store_error("open the lock file", path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)

    def _watch(self, slots: int) -> CloseWatch | None:
        if slots == 1:
            return None
        from singlerun.store.files.inotify import CloseWatch

        try:
            return CloseWatch(self.lock_dir)
        except OSError as exc:
            raise _store_error("watch", self.lock_dir, exc) from None

    def acquire(
        self, key: JobKey, me: Record, *, slots: int, wait: bool, deadline: float | None
    ) -> Lease:
        lease = self._try_any(key, slots, me.job_id)
        if lease is not None:
            return lease
        if not wait:
            raise LockBusy(key, self.holders(key, slots))
        from singlerun.store.files import queue  # lazy: only waiters queue

        qpath = self._path(key, 0, ".queue")
        try:
            qfd = queue.open_dir(qpath, os.stat(self.lock_dir).st_mode & 0o7777)
        except OSError as exc:
            raise _store_error("open the queue", qpath, exc) from None
        watch = None
        try:
            with _deadline_alarm(key, deadline):
                ticket = queue.join(qfd, me)
                try:
                    watch = self._watch(slots)  # before trying: no release goes unseen
                    while True:
                        # Again after each wake: a waiter launched before us may have joined.
                        queue.wait_turn(ticket)
                        if lease := self._try_any(key, slots, me.job_id):
                            return lease
                        self._sleep_until_free(key, slots, watch)
                finally:
                    queue.leave(ticket)
        except WaitTimeout as exc:
            exc.holders = self.holders(key, slots)
            raise
        finally:
            if watch is not None:
                # Closing an inotify instance waits for an RCU grace period (~5 ms here):
                # not before the job starts, but once the lock is released (release()).
                self._watches.append(watch)
            os.close(qfd)

    def release(self, lease: Lease) -> None:
        held: _Held = lease.handle
        path = self._path(lease.key, lease.slot, ".rec")
        # Remove the record only if it is still the file we renamed into place. While we
        # hold the lock nobody else writes it, so the inode says so without reading it.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path, follow_symlinks=False).st_ino == held.record_inode:
                os.unlink(path)
        held.lock.release()
        while self._watches:
            self._watches.pop().close()

    # -- inspection and control -------------------------------------------------------------

    def inspect(self) -> list[KeyState]:
        from singlerun.store.files import scan  # lazy: for the operator's subcommands

        return scan.scan(self.lock_dir, self._read)

    def _slot_of(self, record: Record) -> int | None:
        key = JobKey(record.group, record.name)
        for slot in self._slots(key):
            found = self._record(key, slot)
            if found is not None and found.job_id == record.job_id:
                return slot
        return None

    def mark_stop(
        self, record: Record, reason: str, sig: int | None = None, kill_after: float = 10.0
    ) -> None:
        """A note for the holder's ledger row; the stopper signals it itself (same host)."""
        slot = self._slot_of(record)
        if slot is None:
            return
        path = self._path(JobKey(record.group, record.name), slot, ".stop")
        self._write(path, f"{reason} {record.job_id}\n".encode(), "the stop request")

    def stop_reason(self, lease: Lease) -> str | None:
        path = self._path(lease.key, lease.slot, ".stop")
        data = self._read(path)
        if not data:
            return None
        reason, _, job_id = data.decode(errors="replace").strip().partition(" ")
        if job_id != lease.token:
            return None
        with contextlib.suppress(OSError):
            os.unlink(path)
        return reason

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        removed: list[Record | None] = []
        key = state.key
        if key is None:  # a hashed file name with no readable record: nothing to go by
            return removed
        for slot in self._slots(key):
            path = self._path(key, slot, ".rec")
            if not os.path.lexists(path):
                continue
            # Hold the slot while removing its record, so a run starting now keeps its own.
            lease = self._try_slot(key, slot, "")
            if lease is None:
                continue
            try:
                removed.append(lease.reclaimed.record if lease.reclaimed else None)
                if not dry_run:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            finally:
                lease.handle.lock.release()
        return removed

    # -- the run history: a journal the runs append to, folded into a ledger ---------------

    def _history(self) -> Ledger:
        if self._ledger is None:
            from singlerun.ledger import Ledger  # lazy: sqlite3, for readers only

            self._ledger = Ledger(self.lock_dir)
        return self._ledger

    def add_runs(self, *runs: Run) -> None:
        from singlerun import history

        history.append(self.lock_dir, runs)

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        return self._history().runs(only.group, only.name, limit)

    def last_runs(self) -> dict[tuple[str, str], Run]:
        return self._history().last_by_key()

    # -- leases: a kernel lock needs no renewal ----------------------------------------------

    def renew(self, lease: Lease) -> Renewal:
        from singlerun.store.protocol import Renewal

        return Renewal(True)

    def job_env(self, lease: Lease) -> dict[str, str]:
        return {}

    def regrant(self, lease: Lease, job_id: str) -> None:
        lease.token = job_id  # the kernel lock stays; it has no fencing token

    def close(self) -> None:
        pass
