"""The key is taken: what a store raises when no slot is free, and what the runner words."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

from typing import TYPE_CHECKING, NamedTuple

from singlerun.errors import SinglerunError
from singlerun.exitcodes import ExitCode

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.record import Record


class LockBusy(SinglerunError):
    """The key is taken. The store says by whom; the runner words the message."""

    exit_code: int = ExitCode.CONFLICT

    def __init__(self, key: "JobKey", holders: "list[Record]") -> None:
        super().__init__(f"{key} is already running")
        self.key = key
        self.holders = holders
        self.handover = False  # no holder yet: a waiter queued before this run takes the key


class WaitTimeout(LockBusy):
    """--wait-timeout ran out before the key became free."""


class HeldBack(LockBusy):
    """No slot is granted yet: the store's data is too new to trust that no holder from
    before still runs (a Redis server that lost its data; see store/redis/scripts.py)."""

    class Why(NamedTuple):
        what: str  # "<server> lost its data …", for the message
        wait: float  # seconds until grants resume, as the server saw it
        lost: bool  # a holder from before re-took its lease: its data was surely lost

    def __init__(self, key: "JobKey", why: "HeldBack.Why") -> None:
        super().__init__(key, [])
        self.why = why
