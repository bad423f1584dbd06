"""A key's past on Redis: the run history, a stream of journal lines capped at about
--history-size entries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from singlerun.history import KEEP, journal_line, parse_journal

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.keys import JobKey


def add(db: Any, stream: str, runs: tuple[Run, ...], keep: int | None) -> None:
    pipe = db.pipeline(transaction=False)
    for run in runs:
        pipe.xadd(stream, {"run": journal_line(run)}, maxlen=keep or KEEP)
    pipe.execute()


def entries(read: Any, stream: str, batch: int = 500) -> Iterator[tuple[str, Run]]:
    """(stream entry ID, run), newest first, through the HISTORY script `read`; a forged,
    torn or oversized entry is skipped."""
    top = "+"
    while True:
        found = read(keys=[], args=[stream, top, batch])
        for entry_id, line in found:
            entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            for run in parse_journal(line if isinstance(line, bytes) else b""):
                yield entry, run
            top = f"({entry}"
        if len(found) < batch:
            return


def known(found: Iterator[tuple[str, Run]]) -> list[Run]:
    """The runs of `found` (newest first) without repeats: one row per job ID, its own
    singlerun's over a reclaimer's guess (Run.guessed), whichever came first."""
    seen: dict[str, tuple[int, Run]] = {}
    for n, (_, run) in enumerate(found):
        if run.job_id not in seen or (seen[run.job_id][1].guessed and not run.guessed):
            seen[run.job_id] = (n, run)
    return [run for _, run in sorted(seen.values(), key=lambda pair: pair[0])]


def forget(db: Any, read: Any, stream: str, key: JobKey) -> None:
    """`clean --idle`: the key's runs, removed by ID."""
    found = entries(read, stream)
    ids = [i for i, run in found if (run.group, run.name) == (key.group, key.name)]
    for start in range(0, len(ids), 500):
        db.xdel(stream, *ids[start : start + 500])
