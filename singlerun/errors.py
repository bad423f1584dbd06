"""One exception hierarchy; each error carries its exit code and a one-line message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singlerun.exitcodes import ExitCode

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.record import Record


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


class SpawnError(SinglerunError):
    """The command could not be started (126 or 127)."""


class NotPermitted(SinglerunError):
    """A process of the job may not be signalled by us (another user's job)."""

    exit_code: int = ExitCode.NOT_PERMITTED


class LockBusy(SinglerunError):
    """The key is taken. The store says by whom; the runner words the message."""

    exit_code: int = ExitCode.CONFLICT

    def __init__(self, key: JobKey, holders: list[Record]) -> None:
        super().__init__(f"{key} is already running")
        self.key = key
        self.holders = holders


class WaitTimeout(LockBusy):
    """--wait-timeout ran out before the key became free."""


class Interrupted(SinglerunError):
    """singlerun got a terminating signal before the job started."""

    def __init__(self, signum: int) -> None:
        super().__init__("", ExitCode.SIGNAL_BASE + signum)
