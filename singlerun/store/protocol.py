"""The interface every store implements, and what it answers with: key states for
`status`, renewals and stop requests for a lease. The runner and the subcommands never
name a store class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.keys import JobKey, KeyFilter
    from singlerun.monitor import KeyStats
    from singlerun.record import Record
    from singlerun.store import Lease


REASONS = ("stopped", "replaced")  # what `stop` and `--replace` write


@dataclass(frozen=True)
class StopRequest:
    """Left for a holder by `stop`/`--replace`: why, whom, and (for a holder on another host,
    whose own singlerun acts on it) which signal, SIGKILL `kill_after` later; 0: none."""

    reason: str
    job_id: str
    signal: int = 0
    kill_after: float = 10.0

    def encode(self) -> str:
        return f"{self.reason} {self.job_id} {self.signal} {self.kill_after!r}"

    @classmethod
    def parse(cls, data: object) -> StopRequest | None:
        """None for anything a stopper does not write: a request is data from the store
        (a server anyone with its password can write), and a signal number or delay it
        names is acted on by the holder."""
        import math
        import signal as signals

        from singlerun.durations import MAX_DURATION  # the longest --kill-after

        if not isinstance(data, bytes | str) or len(data) > 1024:
            return None
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        parts = text.split()
        if len(parts) not in (2, 4) or parts[0] not in REASONS:
            return None
        if len(parts) == 2:  # written by the file store
            return cls(parts[0], parts[1])
        try:
            sig, kill_after = int(parts[2]), float(parts[3])
        except ValueError:
            return None
        valid = sig == 0 or sig in signals.valid_signals()
        if not valid or not math.isfinite(kill_after) or not 0 <= kill_after <= MAX_DURATION:
            return None
        return cls(parts[0], parts[1], sig, kill_after)


@dataclass(frozen=True)
class Renewal:
    held: bool | None  # still ours; False: lost; None: the store could not be asked
    stop: StopRequest | None = None
    sent: float | None = None  # monotonic time the answer was asked for, if not just now


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
    """What the runner and the subcommands need of a store; they never name a store class."""

    location: str  # where the locks live, for messages (never with a password)
    # Whether a stop request reaches a holder on another host (its singlerun renews a lease
    # and reads the request); a lock directory's holders never look for one.
    reaches_other_hosts: bool

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

    def stop_reason(self, lease: Lease) -> str | None:
        """The reason a stopper left for this lease's run, if any (and forget it)."""
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
