"""A waiter's patience with a server it lost (docs/CONTRACT.md §6): a dropped connection
(CLIENT KILL, pg_terminate_backend, a proxy's idle timeout, a restart) costs a waiter
nothing but the time it lasts. It tries again with back-off and keeps its place; it gives
up with 125 only after BOUND seconds without a server, or at --wait-timeout as a conflict.
"""

from __future__ import annotations

import os
import time

from singlerun.busy import WaitTimeout
from singlerun.errors import StoreError
from singlerun.keys import JobKey

BOUND = 60.0  # seconds a waiter goes on trying a server it cannot reach
FIRST, LONGEST = 0.1, 2.0  # seconds between tries: doubling from FIRST up to LONGEST


class Outage:
    def __init__(
        self, location: str, key: JobKey, deadline: float | None, bound: float | None = BOUND
    ) -> None:
        """`bound`: seconds without a server before giving up (None: until `deadline`,
        as for a server that answers but has no connection free yet)."""
        self.location, self.key, self.deadline, self.bound = location, key, deadline, bound
        self.since: float | None = None
        self.delay = FIRST

    def over(self) -> None:
        """The server answered again."""
        self.since, self.delay = None, FIRST

    def wait_out(self, why: str) -> None:
        """Sleep before the next try; raise when there is no more to wait for."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if self.deadline is not None and now >= self.deadline:
            raise WaitTimeout(self.key, [])
        if self.bound is not None and now - self.since >= self.bound:
            raise StoreError(
                f"cannot wait on {self.location}: {why} (unreachable for {self.bound:.0f}s)"
            )
        # Jitter (half to 1.5 times): waiters dropped together do not all come back at once.
        jitter = 0.5 + int.from_bytes(os.urandom(2), "big") / 65536
        pause = self.delay * jitter
        if self.bound is not None:
            pause = min(pause, self.since + self.bound - now)
        if self.deadline is not None:
            pause = min(pause, self.deadline - now)
        time.sleep(max(0.0, pause))
        self.delay = min(self.delay * 2, LONGEST)
