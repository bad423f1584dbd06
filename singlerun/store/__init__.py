"""Lock stores: where a key's slots, holder records and waiters live.

The runner talks to a store only through `Store`, so a network store (leases renewed by
TTL, fencing tokens) fits beside the file store without touching the runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.record import Record


@dataclass(frozen=True)
class Reclaimed:
    """What a dead run left behind: its record, or None if the record was unreadable."""

    record: Record | None


@dataclass
class Lease:
    key: JobKey
    slot: int
    token: str  # identifies this grant; a fencing token on network stores
    ttl: float | None  # None: held by a kernel lock, nothing to renew
    job_fd: int | None  # a descriptor the job may inherit to share the lock, if the store has one
    reclaimed: Reclaimed | None
    handle: Any  # store-private state


@dataclass
class KeyState:
    """What a store knows of one key, without touching its locks."""

    stem: str
    key: JobKey | None  # None: a hashed file name with no readable record
    holders: list[Record] = field(default_factory=list)  # records of held slots
    unrecorded: int = 0  # held slots without a readable record
    stale: list[Record | None] = field(default_factory=list)  # records of free slots
    waiters: list[Record] = field(default_factory=list)  # live waiters, in queue order


class Store(Protocol):
    def acquire(
        self, key: JobKey, me: Record, *, slots: int, wait: bool, deadline: float | None
    ) -> Lease:
        """Take a free slot of `key`, or queue (FIFO) until one frees or `deadline` passes.

        Raises LockBusy (nothing free, not waiting), WaitTimeout, or StoreError.
        """
        ...

    def publish(self, lease: Lease, record: Record) -> None:
        """Write (or rewrite) the holder record of the lease's slot."""
        ...

    def release(self, lease: Lease) -> None:
        """Remove our record (only if it is still ours) and free the slot."""
        ...

    def holders(self, key: JobKey) -> list[Record]:
        """The records of the key's occupied slots."""
        ...

    def inspect(self) -> list[KeyState]:
        """Every key the store knows, with its holders, stale records and waiters."""
        ...

    def mark_stop(self, record: Record, reason: str) -> None:
        """Tell the holder named by `record` why it is being stopped (e.g. `replaced`)."""
        ...

    def stop_reason(self, lease: Lease) -> str | None:
        """The reason a stopper left for this lease's run, if any (and forget it)."""
        ...

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        """Remove a key's stale records and dead waiters' tickets; return the records."""
        ...
