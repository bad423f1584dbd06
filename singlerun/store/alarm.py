"""A deadline for a blocking call: --wait-timeout while a waiter sleeps in flock(), and a
network store's whole-reply deadline (store/redis/bounded.py)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def alarm_at(deadline: float | None, expired: Callable[[], BaseException]) -> Iterator[None]:
    """Raise `expired()` once `deadline` (monotonic) passes, even in a sleeping flock()."""
    if deadline is None:
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise expired()

    import time

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise expired()
        signal.setitimer(signal.ITIMER_REAL, remaining)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
