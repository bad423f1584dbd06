"""The embedded store: one flock-ed lock file per key slot, beside its holder record.

The kernel lock is the truth: it is free exactly when no process holds it, whatever the
records say. Lock files are never deleted (unlinking a locked file would split contenders
across inodes). Every file is reached through the lock directory's one checked descriptor
(lockdir.LockDir), without following symlinks. Waiting is queue.py and waking.py.

Long: the store's primitives and its operator actions (clean, forget) share the slot
files' naming and the verified lock; apart, each would repeat them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from singlerun.busy import WaitTimeout
from singlerun.errors import StoreError
from singlerun.keys import MAX_SLOTS, JobKey, KeyFilter
from singlerun.lease import Lease, Reclaimed, StopRequest
from singlerun.record import MAX_SIZE, Record, encode, parse
from singlerun.store.alarm import alarm_at
from singlerun.store.base import StoreBase
from singlerun.store.files.lockdir import LockDir

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.keystats import KeyStats
    from singlerun.lease import Renewal
    from singlerun.store.files.inotify import CloseWatch
    from singlerun.store.files.ledger import Ledger
    from singlerun.store.protocol import KeyState


class _Held:
    """A lease's private state: the locked descriptor, and the inode of the record it
    published. (A plain class: a dataclass costs a run ~1 ms to create, README.)"""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.record_inode: int | None = None

    def release(self) -> None:
        """Unlock, then close: the job's inherited copy of the descriptor stops holding the
        lock too. Closing a descriptor opened for writing also tells inotify watchers (the
        waiters for one of several slots) that the slot may be free."""
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class FileStore(StoreBase):
    """Locks in a local directory (docs/CONTRACT.md §6's embedded store)."""

    kind = "files"
    reaches_other_hosts = False  # see protocol.Store
    fencing = False  # a kernel lock has no fencing token

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

    def _slots_held(self, key: JobKey) -> list[tuple[int, Record | None]]:
        """Slots with a record: while a slot is locked, only its holder writes its record."""
        return [(slot, self._record(key, slot)) for slot in self._slots(key)]

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

    def _try(self, key: JobKey, me: Record, slots: int) -> Lease | None:
        for slot in range(slots):
            if lease := self._try_slot(key, slot, me.job_id):
                return lease
        return None

    def acquire(
        self,
        key: JobKey,
        me: Record,
        *,
        slots: int,
        wait: bool,
        deadline: float | None,
        job: tuple[int, float | None] | None = None,
    ) -> Lease:
        # `job` is never given: a kernel lock needs no watchdog, so nothing is forked ahead.
        lease = super().acquire(key, me, slots=slots, wait=wait, deadline=deadline)
        # A shared flock on the directory while the key is held: systemd-tmpfiles (which
        # ages /tmp out after 10 days on Fedora and RHEL, older versions honouring only a
        # lock on the directory) skips a directory it cannot lock, so it cannot delete an
        # old lock file under a running job. Never waited for: a cleaner holds it briefly.
        with contextlib.suppress(OSError):
            fcntl.flock(self.dir.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return lease

    def _queue(self, key: JobKey, me: Record, slots: int, deadline: float | None) -> Lease:
        from singlerun.store.files import queue, waking  # lazy: only waiters queue

        qname = self._name(key, 0, ".queue")
        try:
            qfd = self.dir.subdir(qname)
        except OSError as exc:
            raise self.dir.error("open the queue", qname, exc) from None
        watch = None
        names = [self._name(key, slot, ".lock") for slot in range(slots)]
        try:
            with alarm_at(deadline, lambda: WaitTimeout(key, [])):
                ticket = queue.join(qfd, me, self.dir.mode)
                try:
                    watch = waking.watch(self.dir, slots)  # before trying: none unseen
                    while True:
                        # Again after each wake: a waiter launched before us may have joined.
                        queue.wait_turn(ticket)
                        if lease := self._try(key, me, slots):
                            return lease
                        waking.sleep_until_free(self.dir, names, watch)
                finally:
                    queue.leave(ticket)
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

    def _write_stop(self, key: JobKey, slot: int, request: StopRequest) -> None:
        """A note for the holder's ledger row; the stopper signals it itself (same host)."""
        note = f"{request.encode()}\n".encode()
        self.dir.replace(self._name(key, slot, ".stop"), note, "the stop request")

    def stop_request(self, lease: Lease) -> StopRequest | None:
        name = self._name(lease.key, lease.slot, ".stop")
        found = self.dir.read(name, 4096)
        request = StopRequest.parse(found[0]) if found and found[0] else None
        if request is None or request.job_id != lease.token:
            return None
        with contextlib.suppress(OSError):
            self.dir.unlink(name)
        return request

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        from singlerun.store.files import queue

        if not dry_run:
            queue.prune(self.dir, f"{state.stem}.queue")
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
        from singlerun.store.files import queue

        taken: list[Lease] = []
        try:
            for slot in list(self._slots(key)):
                lease = self._try_slot(key, slot, "")
                if lease is None:
                    return False
                taken.append(lease)
            if queue.anyone_waits(self.dir, self._name(key, 0, ".queue")):
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

    # -- the run history: a journal the runs append to, folded into a ledger ---------------

    def _history(self) -> Ledger:
        if self._ledger is None:
            from singlerun.store.files.ledger import Ledger  # lazy: sqlite3, for readers only

            self._ledger = Ledger(self.dir)
        return self._ledger

    def add_runs(self, *runs: Run, keep: int | None = None) -> None:
        from singlerun.history import KEEP
        from singlerun.store.files import journal

        if journal.append(self.dir, runs):
            self._history().fold(keep or KEEP)  # sqlite3, once per many runs

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        return self._history().runs(only.group, only.name, limit)

    def last_runs(self) -> dict[tuple[str, str], Run]:
        return self._history().last_by_key()

    def key_stats(self, only: KeyFilter) -> dict[tuple[str, str], KeyStats]:
        return self._history().stats(only.group, only.name)  # kept by the ledger's triggers

    # -- leases: a kernel lock needs no renewal ----------------------------------------------

    def renew(self, lease: Lease) -> Renewal:
        from singlerun.lease import Renewal

        return Renewal(True)

    def regrant(self, lease: Lease, job_id: str) -> None:
        lease.token = job_id  # the kernel lock stays; it has no fencing token

    def close(self) -> None:
        """The directory's descriptor stays open for the process's life (close-on-exec)."""
