"""--retry and --respawn: whether another attempt follows, and after how long.

The key stays held between attempts (run-one-until-success and keep-one-running, without
the window in which a shell loop lets another instance in). Delays start at --retry-delay
and double, each with a jitter of at most ±20 %, capped by --retry-max-delay; with
--respawn the back-off starts over after an attempt that ran longer than the cap, as
systemd's and Kubernetes' restart back-off do.
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass

from singlerun.exitcodes import ExitCode


@dataclass(frozen=True, eq=False)
class Policy:
    retries: int = 0  # --retry N: up to N more attempts after a failure
    respawn: bool = False  # --respawn: start it again whenever it exits
    delay: float = 1.0  # --retry-delay: the first pause
    max_delay: float = 300.0  # --retry-max-delay

    @property
    def active(self) -> bool:
        return self.retries > 0 or self.respawn


# Never another attempt after these: the job exceeded --max-runtime (124), singlerun failed
# or lost its lease (125).
_FINAL = {ExitCode.TIMEOUT, ExitCode.INTERNAL}
# A job that died of these was stopped from the terminal (Ctrl-C, Ctrl-\): the user's word.
_FROM_THE_TERMINAL = {signal.SIGINT, signal.SIGQUIT}


class Backoff:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.left = policy.retries
        self.base = policy.delay

    def pause_before_next(
        self, code: int, died_of: int | None, interrupted: bool, ran_for: float
    ) -> float | None:
        """Seconds to wait before the next attempt, or None if there is none: the attempt
        succeeded (--retry), ran out of retries, or was stopped (`stop`, `--replace`, a
        signal to singlerun or from the terminal, --max-runtime, a lost lease)."""
        p = self.policy
        if interrupted or code in _FINAL or died_of in _FROM_THE_TERMINAL:
            return None
        if p.respawn:
            if ran_for > p.max_delay:
                self.base = p.delay
        elif code == 0 or self.left <= 0:
            return None
        else:
            self.left -= 1
        pause = min(self.base * random.uniform(0.8, 1.2), p.max_delay)
        self.base = min(self.base * 2, p.max_delay)
        return pause
