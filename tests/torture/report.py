"""Figures the torture tests gather; printed as a table at the end of the run."""

import os
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
