"""The key is taken: what a store raises when no slot is free, and what the runner words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singlerun.errors import SinglerunError
from singlerun.exitcodes import ExitCode

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.record import Record


class LockBusy(SinglerunError):
    """The key is taken. The store says by whom; the runner words the message."""

    exit_code: int = ExitCode.CONFLICT

    def __init__(self, key: JobKey, holders: list[Record]) -> None:
        super().__init__(f"{key} is already running")
        self.key = key
        self.holders = holders


class WaitTimeout(LockBusy):
    """--wait-timeout ran out before the key became free."""
