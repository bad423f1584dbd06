"""singlerun: run at most one instance of a job at a time."""

import contextlib
import os

__version__ = "0.1.0"

PREFIX = "singlerun: "  # every line singlerun itself writes to stderr starts with it


def say(message: str) -> None:
    """One line on stderr, written at once (a single write, so lines never interleave)."""
    with contextlib.suppress(OSError):  # stderr closed or a broken pipe: nothing to say
        os.write(2, f"{PREFIX}{message}\n".encode(errors="backslashreplace"))
