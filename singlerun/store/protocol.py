"""The interface every store implements, and what it answers with: key states for
`status`, renewals and stop requests for a lease. The runner and the subcommands never
name a store class."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.keys import JobKey, KeyFilter
    from singlerun.keystats import KeyStats
    from singlerun.lease import Lease, Renewal, StopRequest
    from singlerun.record import Record


@dataclass
class KeyState:
    """What a store knows of one key, without touching its locks."""

    stem: str
    key: JobKey | None  # None: a hashed file name with no readable record
    holders: list[Record] = field(default_factory=list)  # records of held slots
    unrecorded: int = 0  # held slots without a readable record
    stale: list[Record | None] = field(default_factory=list)  # records of free slots
    waiters: list[Record] = field(default_factory=list)  # live waiters, in queue order
    # Runs whose lease was lost and whose job runs on (--on-lease-lost continue): no slot.
    adrift: list[Record] = field(default_factory=list)

    def named(self) -> KeyState:
        """The key of a hashed stem (a long or odd name) is not in the stem: take it from
        any record of the key."""
        if self.key is None:
            every = (*self.holders, *self.adrift, *self.stale, *self.waiters)
            known = next((r for r in every if r), None)
            if known is not None:
                from singlerun.keys import JobKey

                self.key = JobKey(known.group, known.name)
        return self


class Store(Protocol):
    """What the runner and the subcommands need of a store; they never name a store class."""

    kind: str  # "files", "redis", "postgres" (a row of store.STORES, or the lock directory)
    location: str  # where the locks live, for messages (never with a password)
    # Whether a stop request reaches a holder on another host (its singlerun renews a lease
    # and reads the request); a lock directory's holders never look for one.
    reaches_other_hosts: bool

    def exposure(self) -> str:
        """Why a run's lock traffic can be read or forged on the way ('' if it cannot)."""
        ...

    def acquire(
        self,
        key: JobKey,
        me: Record,
        *,
        slots: int,
        wait: bool,
        deadline: float | None,
        job: tuple[int, float | None] | None = None,
    ) -> Lease:
        """Take a free slot of `key`, or queue (FIFO) until one frees or `deadline` passes.
        `job`: the PID and start time of the job's process, forked ahead (standby.py); a
        network store then names it in the record the grant publishes (Lease.named).

        Raises LockBusy (nothing free, not waiting), WaitTimeout, or StoreError.
        """
        ...

    def publish(self, lease: Lease, record: Record) -> None:
        """Write (or rewrite) the holder record of the lease's slot."""
        ...

    def job_env(self, lease: Lease) -> dict[str, str]:
        """Variables the job gets from its grant (SINGLERUN_FENCING_TOKEN on a network store)."""
        ...

    def regrant(self, lease: Lease, job_id: str) -> None:
        """The lease, kept, passes to the next attempt of a --retry/--respawn run: a new
        fencing token (network stores). StoreError if it was lost meanwhile."""
        ...

    def renew(self, lease: Lease) -> Renewal:
        """Set the lease's TTL again (from now); say whether it is still ours, and whether a
        stop was requested for its run. Never raises: an unreachable store is `held=None`."""
        ...

    def adrift(self, lease: Lease) -> None:
        """Show the lease's run in `status` as running without its lease (lost, and the job
        runs on: --on-lease-lost continue) for a TTL from now; called again every tick,
        and ended by `release`. Never raises: it only informs."""
        ...

    def release(self, lease: Lease) -> None:
        """Remove our record (only if it is still ours) and free the slot."""
        ...

    def holders(self, key: JobKey, slots: int) -> list[Record]:
        """The records of the key's occupied slots among the first `slots`."""
        ...

    def inspect(self) -> list[KeyState]:
        """Every key the store knows, with its holders, stale records and waiters."""
        ...

    def mark_stop(
        self, record: Record, reason: str, sig: int | None = None, kill_after: float = 10.0
    ) -> None:
        """Tell the holder named by `record` why it is being stopped (e.g. `replaced`); with
        `sig`, ask its own singlerun to stop it (a holder on another host)."""
        ...

    def stop_request(self, lease: Lease) -> StopRequest | None:
        """The request a stopper left for this lease's run, if any (and forget it). Asked
        only of a kernel lock (a lease without a TTL): a lease's renewals carry the same
        request (`Renewal.stop`), parsed the same way."""
        ...

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        """Remove a key's stale records and dead waiters' tickets; return the records."""
        ...

    def forget(self, key: JobKey, *, dry_run: bool) -> bool:
        """Forget an idle key (`clean --idle`): what the store keeps of it (lock files,
        records, queue, fencing counter) and its runs in the history. False, and nothing
        removed, if a slot is held or someone waits."""
        ...

    def add_runs(self, *runs: Run, keep: int | None = None) -> None:
        """Add finished runs to the history (once per job ID), which keeps the newest `keep`
        (None: history.KEEP)."""
        ...

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        """Finished runs, newest first."""
        ...

    def last_runs(self) -> dict[tuple[str, str], Run]:
        """The newest finished run of every key."""
        ...

    def key_stats(self, only: KeyFilter) -> dict[tuple[str, str], KeyStats]:
        """For monitoring: each key's last run, last success and runs by outcome."""
        ...

    def close(self) -> None:
        """Let go of connections (held leases are released by `release`)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """close(), on every way out of a `with open_store(...)` block."""
        ...
