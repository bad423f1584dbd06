"""Sleep until a lock file of a directory is let go, without polling (Linux inotify).

The kernel releases a flock when the last descriptor of its open file is closed, and that
same final close is what inotify reports as IN_CLOSE_WRITE (lock files are opened
read-write). So a waiter for any of several slots sleeps in read() on one descriptor and
wakes the moment one of them may have been freed — by a release, an exit or a SIGKILL.
The standard library has no inotify; ctypes reaches libc's three calls.
"""

from __future__ import annotations

import ctypes
import os
import struct

_IN_CLOSE_WRITE = 0x8
# The kernel's event queue overflowed (events were dropped), or the watch ended (the
# directory went away): either way a close may have been missed, so look again.
_LOOK_AGAIN = 0x4000 | 0x8000  # IN_Q_OVERFLOW | IN_IGNORED
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name


class CloseWatch:
    """Close-after-write events of the files directly in one directory."""

    def __init__(self, directory: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(_IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), _IN_CLOSE_WRITE) < 0:
            errno = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(errno, f"inotify_add_watch {directory}")

    def wait(self, names: set[str]) -> None:
        """Sleep until one of `names` is closed after writing (since the watch began), or
        until a close may have gone unreported."""
        while True:
            data = os.read(self.fd, 64 * 1024)
            if not data:
                return  # no more events can come: the caller looks for itself
            pos = 0
            while pos + _EVENT.size <= len(data):
                _, mask, _, size = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size
                name = data[pos : pos + size].rstrip(b"\0").decode(errors="surrogateescape")
                pos += size
                if name in names or mask & _LOOK_AGAIN:
                    return

    def close(self) -> None:
        os.close(self.fd)
