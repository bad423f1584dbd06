"""The ledger's monitoring figures (ledgerstats.py): kept by a trigger, filled from the runs
of an older ledger at its next write, cumulative across trims, and a scan until then."""

from __future__ import annotations

import os
import sqlite3
import time

from singlerun.history import Run
from singlerun.store.files.ledger import Ledger
from singlerun.store.files.lockdir import LockDir


def _run(job: str, started: float, outcome: str = "ok") -> Run:
    return Run(job, "g", "n", "h", 1, started, started + 1, int(outcome != "ok"), outcome, "[]")


def _ledger(tmp_path) -> Ledger:
    tmp_path.chmod(0o700)
    return Ledger(LockDir(str(tmp_path)))


def test_figures_follow_every_insert_once(tmp_path):
    ledger = _ledger(tmp_path)
    ledger.add(_run("A1", 10), _run("A2", 20, "failed"), _run("A0", 5))
    ledger.add(_run("A2", 20, "failed"))  # the same run again: counted once
    stats = ledger.stats(None, None)[("g", "n")]
    assert stats.outcomes == {"ok": 2, "failed": 1}
    assert (stats.last.job_id, stats.last_success.job_id) == ("A2", "A1")
    assert stats.last.exit_status == 1 and isinstance(stats.last.pid, int)


def test_an_older_ledger_is_scanned_then_filled_at_its_next_write(tmp_path):
    ledger = _ledger(tmp_path)
    ledger.add(_run("A1", 10), _run("A2", 20, "failed"))
    db = sqlite3.connect(os.path.join(tmp_path, "history.db"))
    db.executescript("DROP TRIGGER count_run; DROP TABLE outcomes; DROP TABLE newest;")
    db.close()
    assert ledger.stats(None, None)[("g", "n")].outcomes == {"ok": 1, "failed": 1}
    ledger.add(_run("A3", 30))
    stats = ledger.stats(None, None)[("g", "n")]
    assert stats.outcomes == {"ok": 2, "failed": 1} and stats.last.job_id == "A3"


def test_counts_stay_cumulative_when_the_history_is_trimmed(tmp_path):
    ledger = _ledger(tmp_path)
    ledger.add(*[_run(f"A{i}", i) for i in range(150)])
    ledger._trim(100, deadline=time.monotonic() + 30)
    assert len(ledger.runs()) == 100
    stats = ledger.stats(None, None)[("g", "n")]
    assert stats.outcomes == {"ok": 150}  # a counter never drops
    assert stats.last.job_id == "A149"


def test_a_ledger_without_the_newest_columns_gains_them_and_keeps_its_counts(tmp_path):
    """A ledger from before invocation_id and stopped_by (issues 24.2, 19.6)."""

    ledger = _ledger(tmp_path)
    ledger.add(_run("A1", 10), _run("A2", 20, "failed"))
    old = [f'"{name}"' for name in Run._fields][:-2]
    db = sqlite3.connect(os.path.join(tmp_path, "history.db"))
    db.executescript(
        "DROP TRIGGER count_run;"
        + "".join(
            f"ALTER TABLE {t} DROP COLUMN {c};"
            for t in ("runs", "newest")
            for c in ("invocation_id", "stopped_by")
        )
        + "CREATE TRIGGER count_run AFTER INSERT ON runs BEGIN "
        + 'INSERT INTO outcomes VALUES (NEW."group", NEW.name, NEW.outcome, 1) '
        + "ON CONFLICT DO UPDATE SET runs = runs + 1; "
        + f"INSERT INTO newest SELECT 'last', {', '.join('NEW.' + c for c in old)} WHERE 1 "
        + "ON CONFLICT DO NOTHING; END;"
    )
    db.close()
    assert ledger.stats(None, None)[("g", "n")].outcomes == {"ok": 1, "failed": 1}
    ledger.add(_run("A3", 30)._replace(invocation_id="f" * 32, stopped_by="u@h"))
    stats = ledger.stats(None, None)[("g", "n")]
    assert stats.outcomes == {"ok": 2, "failed": 1}  # kept, and counted on
    assert (stats.last.job_id, stats.last.stopped_by, stats.last_success.stopped_by) == (
        "A3",
        "u@h",
        "u@h",
    )
    newest = ledger.runs()[0]
    assert (newest.invocation_id, newest.stopped_by) == ("f" * 32, "u@h")
    assert ledger.runs()[1].stopped_by == ""
