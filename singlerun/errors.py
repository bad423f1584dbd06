"""One exception hierarchy; each error carries its exit code and a one-line message."""

from __future__ import annotations

from singlerun.exitcodes import ExitCode


class SinglerunError(Exception):
    exit_code: int = ExitCode.INTERNAL

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(SinglerunError):
    exit_code: int = ExitCode.USAGE


class StoreError(SinglerunError):
    """The lock directory or a lock store cannot be used."""


class Dropped(StoreError):
    """The connection to the server dropped or timed out, or the server has no connection
    free: worth trying again (a waiter does, store/outage.py). `where`: the server."""

    def __init__(self, message: str, where: str = "the server") -> None:
        super().__init__(message)
        self.where = where


class SpawnError(SinglerunError):
    """The command could not be started (126 or 127)."""


class NotPermitted(SinglerunError):
    """A process of the job may not be signalled by us (another user's job)."""

    exit_code: int = ExitCode.NOT_PERMITTED


class Interrupted(SinglerunError):
    """singlerun got a terminating signal before the job started."""

    def __init__(self, signum: int) -> None:
        super().__init__("", ExitCode.SIGNAL_BASE + signum)
