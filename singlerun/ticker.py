"""Keeping a network lease while the job runs: the supervisor's ticker (supervise.Ticker).

Every tick renews the lease to its full TTL and picks up stop requests from other hosts.
Each good renewal moves the watchdog's deadline to (the renewal's *send* time + TTL -
margin), so the job is killed before the lease can expire on the server even if singlerun
never runs again. A renewal the server refuses (the lease is gone or not ours), or none
that succeeds before the deadline, is a lost lease: the job is stopped, or with
`--on-lease-lost continue` it runs on with a warning, shown by `status` as running with
its lease lost (Store.adrift, said again every tick); its watchdog, armed without a
deadline, still kills it if singlerun dies.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

from singlerun import say
from singlerun.errors import StoreError
from singlerun.lease import Lease, StopRequest, margin
from singlerun.store.protocol import Store
from singlerun.watchdog import Watchdog, reap

LOST = "lease lost"


@dataclass(frozen=True)
class Stop:
    """A ticker's verdict (supervise.Ticker): stop the job with `signal`, SIGKILL
    `kill_after` later, because of `reason`."""

    reason: str
    signal: int = signal.SIGTERM
    kill_after: float = 10.0


class LeaseTicker:
    def __init__(
        self,
        store: Store,
        lease: Lease,
        job_id: str,
        *,
        sig: int,
        kill_after: float,
        keep_running: bool,
    ) -> None:
        assert lease.ttl is not None
        self.store, self.lease, self.job_id, self.ttl = store, lease, job_id, lease.ttl
        self.sig, self.kill_after, self.keep_running = sig, kill_after, keep_running
        # A tick every third of the TTL, and at least every second so that a stop asked for
        # from another host is acted on promptly (a store may renew less often than it
        # ticks: PostgreSQL hears of stops without asking, store/postgres/stops.py).
        self.interval = min(self.ttl / 3, 1.0)
        self.deadline = lease.granted + self.ttl - margin(self.ttl)
        self.watchdog: Watchdog | None = None
        self.lost = False
        # The stop request acted on: the run's only one (its job is stopped by no one else).
        self.request: StopRequest | None = None

    def guard(self, pgid: int, ready: Watchdog | None = None) -> None:
        """The job's process group exists and is about to run: from now on it dies with the
        lease (watchdog.py), or with `--on-lease-lost continue` only with singlerun. `ready`:
        a watchdog forked ahead for it (standby.py), armed if it is still there."""
        deadline = None if self.keep_running else self.deadline
        if ready is not None and ready.pgid == pgid and ready.arm(deadline):
            self.watchdog = ready
            return
        if ready is not None and ready.pgid != pgid:
            ready.abandon()
        self.watchdog = Watchdog(pgid, deadline)

    def _lose(self, why: str) -> Stop | None:
        self.lost = True
        if self.keep_running:  # its watchdog has no deadline: it kills only if we die
            self.store.adrift(self.lease)
            say(f"warning: {self.lease.key}: {why}; the job keeps running (--on-lease-lost)")
            return None
        return Stop(
            LOST, self.sig, max(0.0, min(self.kill_after, self.deadline - time.monotonic()))
        )

    def tick(self) -> Stop | None:
        if self.lost:
            if self.keep_running:
                self.store.adrift(self.lease)
            return None
        sent = time.monotonic()
        renewal = self.store.renew(self.lease)
        asked = renewal.sent or sent
        if renewal.held and asked < self.deadline:
            self.deadline = asked + self.ttl - margin(self.ttl)
            if self.watchdog is not None:
                self.watchdog.extend(self.deadline)
        elif renewal.held is False:
            return self._lose(f"the lease on {self.store.location} was lost")
        elif time.monotonic() >= self.deadline:
            # Too late even if it is still held (a frozen singlerun, a PostgreSQL session
            # that outlived it): the watchdog has already stopped the job.
            return self._lose(f"the lease on {self.store.location} was not renewed in time")
        stop = renewal.stop
        if stop is not None and stop.signal and stop.job_id == self.job_id:
            self.request = stop
            return Stop(stop.reason, stop.signal, stop.kill_after)
        return None

    def in_time(self) -> None:
        """The job is guarded and about to start: raise StoreError if the deadline has passed
        meanwhile (singlerun frozen or held up since its grant). A job that starts after it
        is killed by its watchdog only once the watchdog gets the CPU, which may be after
        the lease has expired on the server and the next holder's job has started (the
        long chaos run caught one so, beside the next job). Not started, it never runs."""
        if time.monotonic() >= self.deadline:
            self.lost = True  # said once, here: not again at the release
            self.disarm()
            late = f"the lease on {self.store.location} ran out before the job started"
            raise StoreError(f"{self.lease.key}: {late}")

    def expired(self) -> bool:
        """Lost, or past the deadline without a renewal (the watchdog may have killed the job
        before a tick could notice)."""
        return self.lost or time.monotonic() >= self.deadline

    def disarm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.disarm()
            self.watchdog = None

    def reap(self) -> None:
        """Reap the watchdogs disarmed (their exits take milliseconds: issue 21)."""
        reap()
