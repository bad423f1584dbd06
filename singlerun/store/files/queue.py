"""The FIFO wait queue of one key: a directory of tickets, each locked by its waiter.

A waiter creates its ticket (already flock-ed) under a short lock on the directory, named
by its launch time, so the queue's order is the order in which waiters were started. It
then sleeps in flock(LOCK_SH) on the ticket just
before its own: the kernel wakes it when that waiter leaves or dies, with no polling. A
ticket whose flock is free but whose file is still there belongs to a dead waiter and is
removed by its successor.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from singlerun.record import MAX_SIZE, Record, encode, parse

if TYPE_CHECKING:
    from singlerun.store.files.lockdir import LockDir

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Ticket:
    dir_fd: int
    name: str
    fd: int


def _tickets(dir_fd: int) -> list[str]:
    return sorted(n for n in os.listdir(dir_fd) if n.isdigit())


def _unlink_if_same(dir_fd: int, name: str, fd: int) -> None:
    try:
        if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _launch_order() -> str:
    """This waiter's place: when its process was launched (clock ticks since boot, as in
    /proc/self/stat), then its PID. Joining the queue comes ~50 ms into start-up; ordering
    by launch keeps waiters started closer together than that in their order. Unique per
    process (a reused PID has a later start), so successors can find a ticket by its name."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    ticks = int(stat[stat.rfind(b")") + 2 :].split()[19])
    return f"{ticks:016d}{os.getpid():010d}"


def join(dir_fd: int, me: Record, mode: int) -> Ticket:
    fcntl.flock(dir_fd, fcntl.LOCK_EX)  # held for a few syscalls only
    try:
        name = _launch_order()
        tmp = f"tmp-{os.urandom(8).hex()}"  # unpredictable: nothing can be planted there
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)  # the lock directory's file mode, whatever the umask
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = encode(me)
            if os.write(fd, data) != len(data):  # a file size limit cuts writes short
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.close(fd)
            raise
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)
    return Ticket(dir_fd, name, fd)


def wait_turn(ticket: Ticket) -> None:
    """Return once no live waiter is ahead of us."""
    while True:
        ahead = [n for n in _tickets(ticket.dir_fd) if n < ticket.name]
        if not ahead:
            return
        try:
            fd = os.open(ahead[-1], os.O_RDONLY | _OPEN_FLAGS, dir_fd=ticket.dir_fd)
        except FileNotFoundError:
            continue  # it left between listdir and open
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # sleeps until that waiter leaves or dies
            _unlink_if_same(ticket.dir_fd, ahead[-1], fd)  # still there: its waiter died
        finally:
            os.close(fd)


def leave(ticket: Ticket) -> None:
    try:
        _unlink_if_same(ticket.dir_fd, ticket.name, ticket.fd)
    finally:
        os.close(ticket.fd)  # wakes our successor


def _each_ticket(dir_fd: int) -> Iterator[tuple[str, int, bool]]:
    """Each ticket: its name, a descriptor of it (open until the next), and whether its
    waiter is alive (holds its flock; if not, we hold a shared one meanwhile)."""
    for name in _tickets(dir_fd):
        try:
            fd = os.open(name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=dir_fd)
        except OSError:
            continue  # it left between listdir and open
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                alive = False
            except BlockingIOError:
                alive = True
            yield name, fd, alive
        finally:
            os.close(fd)


def waiters(dir_fd: int) -> list[tuple[Record | None, bool]]:
    """Each ticket's record and whether its waiter is alive (its flock is held)."""
    return [
        (parse(os.read(fd, MAX_SIZE), os.fstat(fd).st_uid), alive)
        for _, fd, alive in _each_ticket(dir_fd)
    ]


@contextlib.contextmanager
def opened(lock_dir: LockDir, name: str) -> Iterator[int | None]:
    """The queue directory `name` of the lock directory, open; None if there is none."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=lock_dir.fd)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def prune(lock_dir: LockDir, name: str) -> None:
    """Remove the tickets of waiters that died (their flock is free) from the queue
    directory `name`; a live waiter's successor would, but a key may have none."""
    with contextlib.suppress(OSError), opened(lock_dir, name) as qfd:
        if qfd is None:
            return
        for ticket, fd, alive in _each_ticket(qfd):
            if not alive:
                _unlink_if_same(qfd, ticket, fd)


def anyone_waits(lock_dir: LockDir, name: str) -> bool:
    """Whether a live waiter has a ticket in the queue directory `name`."""
    try:
        with opened(lock_dir, name) as qfd:
            return qfd is not None and any(live for _, live in waiters(qfd))
    except OSError as exc:
        raise lock_dir.error("open the queue", name, exc) from None
