"""A password in a URL on the command line (`--backend redis://:PW@host`) is in
/proc/PID/cmdline, which every user of the host can read, for singlerun and for the
watchdog it forks. As mysql(1) does with --password, overwrite it in the process's own
argument memory at start-up, before anything is forked. Python has already copied its
arguments, so the URL still works. The instant from exec until here stays: the README
recommends the environment or a password file (issue 18.3)."""

from __future__ import annotations

import os
from collections.abc import Iterator


def _password_spans(cmdline: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each URL password in the NUL-separated arguments."""
    at = 0
    for arg in cmdline.split(b"\0"):
        pos = arg.find(b"://")
        while pos >= 0:
            host = pos + 3
            ends = [i for i in (arg.find(c, host) for c in (b"/", b"?", b"#")) if i >= 0]
            netloc = arg[host : min(ends, default=len(arg))]
            user_end = netloc.rfind(b"@")
            colon = netloc.find(b":", 0, max(user_end, 0))
            if user_end > 0 and colon >= 0 and user_end > colon + 1:
                yield at + host + colon + 1, at + host + user_end
            pos = arg.find(b"://", host)
        at += len(arg) + 1


def hide_url_passwords() -> None:
    """Best effort: without /proc, or where writing our own memory is refused, nothing."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read()
        if b"://" not in cmdline or b"@" not in cmdline:
            return
        spans = list(_password_spans(cmdline))
        if not spans:
            return
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        arg_start = int(stat[stat.rindex(b")") + 2 :].split()[45])  # field 48: arg_start
        fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        try:
            for start, end in spans:
                os.pwrite(fd, b"*" * (end - start), arg_start + start)
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass
