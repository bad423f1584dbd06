"""Issue 20's idle keys, on every store (tests/contract/test_contract.py runs it on the lock
directory, Redis and PostgreSQL): `status` shows what ran in the last 7 days,
`--all` everything, and `clean --idle D` forgets keys idle for longer than D."""

from __future__ import annotations

import json
import time

from singlerun.history import Run
from singlerun.store import open_store
from tests.conftest import Singlerun, stop

DAY = 86400.0


def _old_run(name: str, days_ago: float) -> Run:
    started = time.time() - days_ago * DAY
    job = f"OLD{name.upper()}{int(days_ago)}"
    return Run(job, "default", name, "h", 4242, started, started + 1, 0, "ok", '["true"]')


def _names(sr: Singlerun, *args: str) -> set[str]:
    r = sr.run("status", "--json", *args)
    assert r.returncode == 0, r.stderr
    return {e["name"] for e in json.loads(r.stdout)}


def check_idle_keys(sr: Singlerun) -> None:
    # Old runs are written through the store's own API: the clock is not ours to move.
    store = open_store(str(sr.lock_dir), sr.env.get("SINGLERUN_BACKEND"))
    store.add_runs(_old_run("old", 40), _old_run("week", 8), _old_run("busy", 40))
    store.close()
    assert sr.run("-n", "fresh", "--", "true").returncode == 0
    holder, _ = sr.start_holder("-n", "busy")
    try:
        assert _names(sr) == {"fresh", "busy"}  # running or ran within 7 days
        assert _names(sr, "--all") == {"fresh", "busy", "old", "week"}
        assert sr.run("status", "-n", "old").returncode == 3  # asked for by name: shown
        r = sr.run("clean", "--idle", "30d", "--dry-run")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            "would forget idle key default/old (last active "
            + r.stdout.split("(last active ")[1].split(")")[0]
            + ")"
        ], r.stdout
        assert _names(sr, "--all") == {"fresh", "busy", "old", "week"}
        r = sr.run("clean", "--idle", "30d")
        assert r.returncode == 0 and r.stdout.startswith("forgot idle key default/old"), r
        assert "busy" not in r.stdout  # running: never forgotten, however old its history
        assert _names(sr, "--all") == {"fresh", "busy", "week"}
        assert json.loads(sr.run("history", "--json", "-n", "old").stdout) == []
        assert len(json.loads(sr.run("history", "--json", "-n", "week").stdout)) == 1
        r = sr.run("clean", "--idle", "1s", "-g", "nosuchgroup")
        assert (r.returncode, r.stdout) == (0, "")
    finally:
        stop(holder)
    # Forgotten keys can be used again at once.
    assert sr.run("-n", "old", "--", "true").returncode == 0
    assert "old" in _names(sr)
