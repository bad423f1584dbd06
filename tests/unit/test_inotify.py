"""The head waiter's inotify wake-up (issue 24.5): an overflowed event queue, or a watch the
kernel ended, wakes it to look again instead of leaving it asleep until its deadline."""

import os
import signal
import struct

import pytest

from singlerun.store.files.inotify import CloseWatch

IN_CLOSE_WRITE, IN_Q_OVERFLOW, IN_IGNORED = 0x8, 0x4000, 0x8000


def _event(mask: int, name: bytes = b"") -> bytes:
    padded = name + b"\0" * (-len(name) % 16) if name else b""
    return struct.pack("iIII", 1 if name else -1, mask, 0, len(padded)) + padded


def _waits_on(data: bytes, names: set[str]) -> bool:
    """Whether wait() returns on `data` (the kernel's bytes, as read from an inotify
    descriptor), within two seconds."""
    r, w = os.pipe()
    os.write(w, data)  # the write end stays open: no end of file, as on an inotify fd
    watch = CloseWatch.__new__(CloseWatch)
    watch.fd = r

    def expire(*_: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        watch.wait(names)
        return True
    except TimeoutError:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(r)
        os.close(w)


def test_a_close_of_a_watched_file_wakes_the_waiter_and_another_does_not():
    assert _waits_on(_event(IN_CLOSE_WRITE, b"k@1.lock"), {"k@1.lock"})
    assert not _waits_on(_event(IN_CLOSE_WRITE, b"other.lock"), {"k@1.lock"})


@pytest.mark.parametrize("mask", [IN_Q_OVERFLOW, IN_IGNORED])
def test_events_that_may_hide_a_close_wake_the_waiter(mask):
    data = _event(IN_CLOSE_WRITE, b"other.lock") + _event(mask)
    assert _waits_on(data, {"k@1.lock"})
