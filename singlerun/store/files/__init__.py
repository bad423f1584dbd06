"""The embedded store: one flock-ed lock file per key slot, beside its holder record.

The kernel lock is the truth: it is free exactly when no process holds it, whatever the
records say. Lock files are never deleted (unlinking a locked file would split contenders
across inodes). Every file is reached through the lock directory's one checked descriptor
(lockdir.LockDir), without following symlinks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from singlerun.errors import LockBusy, StoreError, WaitTimeout
from singlerun.keys import MAX_SLOTS, JobKey, KeyFilter
from singlerun.lockdir import LockDir
from singlerun.record import MAX_SIZE, Record, encode, parse
from singlerun.signals import alarm_at
from singlerun.store import Lease, Reclaimed

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.ledger import Ledger
    from singlerun.monitor import KeyStats
    from singlerun.store.files.inotify import CloseWatch
    from singlerun.store.protocol import KeyState, Renewal


@dataclass
class _Held:
    """A lease's private state: the locked descriptor, and the inode of the record it
    published."""

    fd: int
    record_inode: int | None = None

    def release(self) -> None:
        """Unlock, then close: the job's inherited copy of the descriptor stops holding the
        lock too. Closing a descriptor opened for writing also tells inotify watchers (the
        waiters for one of several slots) that the slot may be free."""
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class FileStore:
    """Locks in a local directory (SPEC §6's embedded store)."""

    reaches_other_hosts = False  # see protocol.Store

    def __init__(self, lock_dir: LockDir) -> None:
        self.dir = lock_dir
        self.location = lock_dir.path  # for messages
        self._ledger: Ledger | None = None
        self._watches: list[CloseWatch] = []  # closed in release(), off the handoff path

    @staticmethod
    def _name(key: JobKey, slot: int, suffix: str) -> str:
        slot_part = f"@{slot}" if slot else ""
        return f"{key.stem}{slot_part}{suffix}"

    # -- records --------------------------------------------------------------------------

    def _record(self, key: JobKey, slot: int) -> Record | None:
        found = self.dir.read(self._name(key, slot, ".rec"), MAX_SIZE)
        return parse(*found) if found and found[0] else None

    def _slots(self, key: JobKey) -> Iterator[int]:
        """The slots of `key` that have files: they are numbered from 0 without gaps."""
        for slot in range(MAX_SLOTS):
            if not self.dir.exists(self._name(key, slot, ".lock")) and not self.dir.exists(
                self._name(key, slot, ".rec")
            ):
                return
            yield slot

    def holders(self, key: JobKey, slots: int) -> list[Record]:
        return [r for slot in range(slots) if (r := self._record(key, slot)) is not None]

    def publish(self, lease: Lease, record: Record) -> None:
        name = self._name(lease.key, lease.slot, ".rec")
        lease.handle.record_inode = self.dir.replace(name, encode(record), "the record")

    # -- acquiring --------------------------------------------------------------------------

    def _try_slot(self, key: JobKey, slot: int, token: str) -> Lease | None:
        # flock(2) on the descriptor opened through the checked directory (no symlink, no
        # FIFO blocking us), created with the directory's file mode. filelock did this
        # before: its import was half of a run's start-up for this one call (README).
        name = self._name(key, slot, ".lock")
        try:
            fd = self.dir.open(name, os.O_RDWR, create=True)
        except OSError as exc:
            raise self.dir.error("open the lock file", name, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None  # held by another process
        except OSError as exc:
            os.close(fd)
            raise self.dir.error("lock", name, exc) from None
        held = _Held(fd)
        if not self._verify(name, held):
            return self._try_slot(key, slot, token)  # forgotten meanwhile: lock the new file
        # We hold the lock, so a record still there was left by a run that died.
        leftover = self.dir.read(self._name(key, slot, ".rec"), MAX_SIZE)
        reclaimed = None if leftover is None else Reclaimed(parse(*leftover))
        return Lease(key, slot, token, None, fd, reclaimed, held)

    def _verify(self, name: str, held: _Held) -> bool:
        """The locked descriptor must be a regular file, and the one now at `name` in our
        directory: a planted FIFO or device is refused. False: the file was removed (by
        `clean --idle`, which holds the lock while it does) between our open and our lock;
        the caller locks the one there now."""
        mine, there = os.fstat(held.fd), self.dir.lstat(name)
        if stat.S_ISREG(mine.st_mode) and there is not None and os.path.samestat(mine, there):
            return True
        held.release()
        if stat.S_ISREG(mine.st_mode) and (there is None or stat.S_ISREG(there.st_mode)):
            return False
        raise StoreError(f"refusing lock file {self.dir.show(name)}: it is not a regular file")

    def _try_any(self, key: JobKey, slots: int, token: str) -> Lease | None:
        for slot in range(slots):
            if lease := self._try_slot(key, slot, token):
                return lease
        return None

    def _maybe_free(self, key: JobKey, slots: int) -> bool:
        """Whether some slot looks free: a shared flock on a read-only descriptor, dropped at
        once. Unlike a try to lock (read-write), closing it is no close-after-write,
        so it wakes no waiter watching the directory (ourselves included). /proc/locks
        would tell too, but reading it took up to 15 ms while a holder was exiting."""
        for slot in range(slots):
            try:
                fd = self.dir.open(self._name(key, slot, ".lock"), os.O_RDONLY)
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

    def _sleep_until_free(self, key: JobKey, slots: int, watch: CloseWatch | None) -> None:
        if watch is not None:  # several slots: inotify reports each final close of a lock file
            names = {self._name(key, slot, ".lock") for slot in range(slots)}
            while not self._maybe_free(key, slots):
                watch.wait(names)
            return
        name = self._name(key, 0, ".lock")
        # Polling for a held lock would cost CPU and latency; flock(LOCK_SH) on our own
        # descriptor sleeps in the kernel until the holder lets go, which costs no CPU and
        # wakes us at once. We drop it right away and race for the real lock.
        try:
            fd = self.dir.open(name, os.O_RDONLY)
        except OSError as exc:
            raise self.dir.error("open the lock file", name, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)

    def _watch(self, slots: int) -> CloseWatch | None:
        if slots == 1:
            return None
        from singlerun.store.files.inotify import CloseWatch

        try:
            return CloseWatch(self.dir.at())
        except OSError as exc:
            raise self.dir.error("watch", "", exc) from None

    def acquire(
        self, key: JobKey, me: Record, *, slots: int, wait: bool, deadline: float | None
    ) -> Lease:
        lease = self._acquire(key, me, slots=slots, wait=wait, deadline=deadline)
        # A shared flock on the directory while the key is held: systemd-tmpfiles (which
        # ages /tmp out after 10 days on Fedora and RHEL, older versions honouring only a
        # lock on the directory) skips a directory it cannot lock, so it cannot delete an
        # old lock file under a running job. Never waited for: a cleaner holds it briefly.
        with contextlib.suppress(OSError):
            fcntl.flock(self.dir.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return lease

    def _acquire(
        self, key: JobKey, me: Record, *, slots: int, wait: bool, deadline: float | None
    ) -> Lease:
        lease = self._try_any(key, slots, me.job_id)
        if lease is not None:
            return lease
        if not wait:
            raise LockBusy(key, self.holders(key, slots))
        from singlerun.store.files import queue  # lazy: only waiters queue

        qname = self._name(key, 0, ".queue")
        try:
            qfd = self.dir.subdir(qname)
        except OSError as exc:
            raise self.dir.error("open the queue", qname, exc) from None
        watch = None
        try:
            with alarm_at(deadline, lambda: WaitTimeout(key, [])):
                ticket = queue.join(qfd, me, self.dir.mode)
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
        # Remove the record only if it is still the file we renamed into place. While we
        # hold the lock nobody else writes it, so the inode says so without reading it.
        if held.record_inode is not None:
            self.dir.unlink(self._name(lease.key, lease.slot, ".rec"), held.record_inode)
        held.release()
        with contextlib.suppress(OSError):
            fcntl.flock(self.dir.fd, fcntl.LOCK_UN)
        while self._watches:
            self._watches.pop().close()

    # -- inspection and control -------------------------------------------------------------

    def inspect(self) -> list[KeyState]:
        from singlerun.store.files import scan  # lazy: for the operator's subcommands

        return scan.scan(self.dir)

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
        name = self._name(JobKey(record.group, record.name), slot, ".stop")
        self.dir.replace(name, f"{reason} {record.job_id}\n".encode(), "the stop request")

    def stop_reason(self, lease: Lease) -> str | None:
        name = self._name(lease.key, lease.slot, ".stop")
        found = self.dir.read(name, 4096)
        if not found or not found[0]:
            return None
        reason, _, job_id = found[0].decode(errors="replace").strip().partition(" ")
        if job_id != lease.token:
            return None
        with contextlib.suppress(OSError):
            self.dir.unlink(name)
        return reason

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        removed: list[Record | None] = []
        key = state.key
        if key is None:  # a hashed file name with no readable record: nothing to go by
            return removed
        for slot in self._slots(key):
            name = self._name(key, slot, ".rec")
            if not self.dir.exists(name):
                continue
            # Hold the slot while removing its record, so a run starting now keeps its own.
            lease = self._try_slot(key, slot, "")
            if lease is None:
                continue
            try:
                removed.append(lease.reclaimed.record if lease.reclaimed else None)
                if not dry_run:
                    self.dir.unlink(name)
            finally:
                lease.handle.release()
        return removed

    def forget(self, key: JobKey, *, dry_run: bool) -> bool:
        """Remove an idle key's files and its runs, holding every slot while doing so (a run
        that opened a lock file we remove locks the new one: _verify). False, and nothing
        removed, if a slot is held or someone waits."""
        taken: list[Lease] = []
        try:
            for slot in list(self._slots(key)):
                lease = self._try_slot(key, slot, "")
                if lease is None:
                    return False
                taken.append(lease)
            if self._waiting(key):
                return False
            if dry_run:
                return True
            for lease in taken:
                for suffix in (".rec", ".stop", ".lock"):
                    with contextlib.suppress(OSError):
                        self.dir.unlink(self._name(key, lease.slot, suffix))
            self._history().forget(key.group, key.name)
            return True
        finally:
            for lease in taken:
                lease.handle.release()

    def _waiting(self, key: JobKey) -> bool:
        from singlerun.store.files import queue

        try:
            qfd = os.open(
                self._name(key, 0, ".queue"),
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=self.dir.fd,
            )
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self.dir.error("open the queue", self._name(key, 0, ".queue"), exc) from None
        try:
            return any(live for _, live in queue.waiters(qfd))
        finally:
            os.close(qfd)

    # -- the run history: a journal the runs append to, folded into a ledger ---------------

    def _history(self) -> Ledger:
        if self._ledger is None:
            from singlerun.ledger import Ledger  # lazy: sqlite3, for readers only

            self._ledger = Ledger(self.dir)
        return self._ledger

    def add_runs(self, *runs: Run, keep: int | None = None) -> None:
        from singlerun import history

        history.append(self.dir, runs, keep or history.KEEP)

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        return self._history().runs(only.group, only.name, limit)

    def last_runs(self) -> dict[tuple[str, str], Run]:
        return self._history().last_by_key()

    def key_stats(self, only: KeyFilter) -> dict[tuple[str, str], KeyStats]:
        return self._history().stats(only.group, only.name)

    # -- leases: a kernel lock needs no renewal ----------------------------------------------

    def renew(self, lease: Lease) -> Renewal:
        from singlerun.store.protocol import Renewal

        return Renewal(True)

    def job_env(self, lease: Lease) -> dict[str, str]:
        return {}

    def regrant(self, lease: Lease, job_id: str) -> None:
        lease.token = job_id  # the kernel lock stays; it has no fencing token

    def close(self) -> None:
        pass  # the directory's descriptor stays open for the process's life (close-on-exec)
