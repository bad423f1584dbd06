"""--retry/--respawn back-off (attempts.py): when another attempt comes, and after how long."""

import random
import signal

import pytest

from singlerun.attempts import Backoff, Policy


def test_retry_doubles_with_jitter_up_to_the_cap_and_stops_at_n():
    random.seed(1)
    b = Backoff(Policy(retries=4, delay=1.0, max_delay=3.0))
    pauses = [b.pause_before_next(1, None, False, 0.1) for _ in range(5)]
    assert pauses[4] is None  # four retries, no fifth
    low, high = [0.8, 1.6, 2.4, 2.4], [1.2, 2.4, 3.0, 3.0]  # ±20 %, capped at 3 s
    for pause, lo, hi in zip(pauses[:4], low, high, strict=True):
        assert pause is not None and lo <= pause <= hi


def test_retry_ends_on_success_and_never_after_a_stop_a_timeout_or_ctrl_c():
    b = Backoff(Policy(retries=5))
    assert b.pause_before_next(0, None, False, 1) is None  # succeeded
    assert b.pause_before_next(1, None, True, 1) is None  # stopped, replaced, signalled
    assert b.pause_before_next(124, None, False, 1) is None  # --max-runtime
    assert b.pause_before_next(125, None, False, 1) is None  # singlerun failed, lease lost
    assert b.pause_before_next(130, signal.SIGINT, False, 1) is None  # Ctrl-C
    assert b.pause_before_next(1, None, False, 1) is not None


@pytest.mark.parametrize("code", [0, 1])
def test_respawn_goes_on_whatever_the_status_and_starts_over_after_a_long_run(code):
    random.seed(2)
    b = Backoff(Policy(respawn=True, delay=1.0, max_delay=4.0))
    first = [b.pause_before_next(code, None, False, 0.1) for _ in range(4)]
    assert all(p is not None for p in first) and max(first) > 3  # type: ignore[type-var]
    again = b.pause_before_next(code, None, False, 10.0)  # ran longer than the cap
    assert again is not None and again <= 1.2
