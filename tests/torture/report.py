"""Figures the torture tests gather; printed as a table at the end of the run."""

import os
import re
import signal
from collections import Counter

LONG = os.environ.get("TORTURE_LONG") == "1"
FIGURES: Counter[str] = Counter()
ORDER = [
    "runs attempted",
    "jobs that ran",
    "overlaps",
    "processes killed by chaos",
    "stale records reclaimed",
    "signals in storms",
]


def table() -> str:
    keys = ORDER + sorted(k for k in FIGURES if k not in ORDER)
    rows = [f"| {k} | {FIGURES[k]} |" for k in keys if k in FIGURES]
    mode = "long" if LONG else "CI"
    return "\n".join(
        [f"torture figures ({mode} mode)", "", "| what | count |", "| --- | ---: |", *rows]
    )


def interpreter_start_up(code: int, err: str) -> bool:
    """A SIGINT that lands before singlerun's first statement has run: Python's own handler
    reports a KeyboardInterrupt (exit -2, 1 with "Fatal Python error" in `site`, or
    "Exception ignored" in an import callback). Allowed frames of ours: the module level of
    the entry modules, i.e. importing them; anything deeper means singlerun missed it."""
    if "KeyboardInterrupt" not in err:
        return False
    ours = re.findall(r'File "[^"]*/singlerun/([^"]+)", line \d+, in (\S+)', err)
    allowed = {("__main__.py", "<module>"), ("launch.py", "<module>")}
    started = code in (1, -signal.SIGINT) or "Exception ignored" in err
    return started and all(frame in allowed for frame in ours)
