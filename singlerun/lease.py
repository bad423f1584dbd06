"""The lease vocabulary every store and the runner share: a grant (Lease), what a dead run
left (Reclaimed), a renewal's answer (Renewal), a stop request (StopRequest) and the safety
margin. The loop that keeps a lease alive while the job runs is ticker.py.

A lease's clock starts when the grant is *asked for* (`Lease.granted`, taken before the
request that starts the server's TTL), so the local deadline never falls after the
server's expiry.

The immutable ones are NamedTuples: every run imports this module, and a frozen dataclass
costs about four times as much to create at start-up (~0.5 ms for the three, measured).
"""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.record import Record


class Reclaimed(NamedTuple):
    """What a dead run left behind: its record, or None if the record was unreadable."""

    record: "Record | None"


class Lease:
    """A grant. Mutable (a regrant changes its token), and a plain class: a dataclass costs
    a run ~1 ms to create at start-up."""

    def __init__(
        self,
        key: "JobKey",
        slot: int,
        token: str,
        ttl: float | None,
        job_fd: int | None,
        reclaimed: Reclaimed | None,
        handle: Any,
        granted: float = 0.0,
        named: "Record | None" = None,
    ) -> None:
        self.key, self.slot = key, slot
        self.token = token  # identifies this grant; a fencing token on network stores
        self.ttl = ttl  # None: held by a kernel lock, nothing to renew
        self.job_fd = job_fd  # a descriptor the job may inherit to share the lock, if any
        self.reclaimed = reclaimed
        self.handle = handle  # store-private state
        self.granted = granted  # monotonic time just before the grant was asked (leases)
        # The record the grant published, naming the job forked ahead (Store.acquire's `job`)
        self.named = named


REASONS = ("stopped", "replaced")  # what `stop` and `--replace` write
MAX_BY = 320  # a user name (32) @ a host name (255), with room


class StopRequest(NamedTuple):
    """Left for a holder by `stop`/`--replace`: why, whom, (for a holder on another host,
    whose own singlerun acts on it) which signal, SIGKILL `kill_after` later (0: none), and
    who asked (USER@HOST, for the run's history row)."""

    reason: str
    job_id: str
    signal: int = 0
    kill_after: float = 10.0
    by: str = ""

    def encode(self) -> str:
        by = f" {self.by}" if self.by else ""
        return f"{self.reason} {self.job_id} {self.signal} {self.kill_after!r}{by}"

    @classmethod
    def parse(cls, data: object) -> "StopRequest | None":
        """None for anything a stopper does not write: a request is data from the store
        (a server anyone with its password can write), and a signal number or delay it
        names is acted on by the holder. Fields after the fifth are a newer singlerun's
        and ignored."""
        import math
        import signal as signals

        from singlerun.durations import MAX_DURATION  # the longest --kill-after

        if not isinstance(data, bytes | str) or len(data) > 1024:
            return None
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        parts = text.split()
        if len(parts) in (0, 1, 3) or parts[0] not in REASONS:
            return None
        if len(parts) == 2:  # written by an older file store
            return cls(parts[0], parts[1])
        try:
            sig, kill_after = int(parts[2]), float(parts[3])
        except ValueError:
            return None
        valid = sig == 0 or sig in signals.valid_signals()
        if not valid or not math.isfinite(kill_after) or not 0 <= kill_after <= MAX_DURATION:
            return None
        by = parts[4] if len(parts) > 4 else ""
        if not (by.isprintable() and len(by) <= MAX_BY):  # it is shown in `history`
            by = "?"
        return cls(parts[0], parts[1], sig, kill_after, by)


class Renewal(NamedTuple):
    held: bool | None  # still ours; False: lost; None: the store could not be asked
    stop: StopRequest | None = None
    sent: float | None = None  # monotonic time the answer was asked for, if not just now


def margin(ttl: float) -> float:
    """How long before the server's expiry the job must be gone: a fifth of the TTL, at
    most 2 s (clock-rate drift between hosts and the kill itself)."""
    return min(ttl / 5, 2.0)
