"""The figures `check` and `metrics` read of each key's history (KeyStats), kept apart from
history.py, which every run imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from singlerun.history import Run


@dataclass
class KeyStats:
    """What monitoring asks of one key's history (`check`, `metrics`)."""

    last: Run | None = None  # the newest finished run
    last_success: Run | None = None  # the newest with outcome ok
    outcomes: dict[str, int] | None = None  # runs by outcome, as far as the history goes

    def add(self, run: Run) -> None:
        """Count `run` in (any order)."""
        if self.last is None or (run.started_at, run.job_id) > (
            self.last.started_at,
            self.last.job_id,
        ):
            self.last = run
        if run.outcome == "ok" and (
            self.last_success is None or run.started_at > self.last_success.started_at
        ):
            self.last_success = run
        self.outcomes = self.outcomes or {}
        self.outcomes[run.outcome] = self.outcomes.get(run.outcome, 0) + 1


def stats_of(runs: list[Run]) -> dict[tuple[str, str], KeyStats]:
    """Each key's KeyStats, from its runs (the network stores; the lock directory's ledger
    keeps them: ledgerstats.py)."""
    stats: dict[tuple[str, str], KeyStats] = {}
    for run in runs:
        stats.setdefault((run.group, run.name), KeyStats()).add(run)
    return stats
