"""singlerun: run at most one instance of a job at a time."""

import contextlib
import os

__version__ = "0.1.0"

PREFIX = "singlerun: "  # every line singlerun itself writes to stderr starts with it
ERROR, WARNING, INFO = 3, 4, 6  # syslog priorities, for the journal
_journal: bool | None = None  # whether stderr is the systemd journal (decided once)


def _to_journal() -> bool:
    """systemd names the journal stream it gave a service's stderr in JOURNAL_STREAM
    (device:inode); a line written there may start with its priority (sd-daemon(3))."""
    global _journal
    if _journal is None:
        try:
            st = os.fstat(2)
            _journal = os.environ.get("JOURNAL_STREAM") == f"{st.st_dev}:{st.st_ino}"
        except OSError:
            _journal = False
    return _journal


def say(message: str, level: int = INFO) -> None:
    """One line on stderr, written at once (a single write, so lines never interleave);
    in the journal with its priority (`journalctl -p warning` finds conflicts)."""
    if message.startswith("warning: "):
        level = min(level, WARNING)
    priority = f"<{level}>" if _to_journal() else ""
    with contextlib.suppress(OSError):  # stderr closed or a broken pipe: nothing to say
        os.write(2, f"{priority}{PREFIX}{message}\n".encode(errors="backslashreplace"))
