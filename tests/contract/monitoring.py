"""Issue 22's monitoring, on every store (tests/contract/test_contract.py runs it on the lock
directory, Redis and PostgreSQL): `check` in the monitoring-plugin convention,
`metrics` read by Prometheus' own parser, `--textfile-dir`, `history --summary`."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from singlerun.history import Run
from singlerun.store import open_store
from tests.conftest import Singlerun, stop, wait_for

HOUR = 3600.0


def _success(name: str, hours_ago: float) -> Run:
    ended = time.time() - hours_ago * HOUR
    job = f"PAST{name.upper()}{int(hours_ago * 10)}"
    return Run(job, "default", name, "h", 4242, ended - 5, ended, 0, "ok", '["true"]')


def _check(sr: Singlerun, *args: str) -> tuple[int, str]:
    r = sr.run("check", *args)
    assert r.stdout.count("\n") == 1 or "--json" in args, r.stdout
    return r.returncode, r.stdout


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _key(name: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"group": "default", "name": name, **more}.items()))


def check_monitoring(sr: Singlerun, textfile_dir: Path) -> None:
    # History the clock cannot make honestly is written through the store's own API.
    store = open_store(str(sr.lock_dir), sr.env.get("SINGLERUN_BACKEND"))
    store.add_runs(_success("old", 25.5), _success("long", 1))
    store.close()
    assert sr.run("-n", "ok", "--", "true").returncode == 0
    assert sr.run("-n", "bad", "--", "true").returncode == 0
    assert sr.run("-n", "bad", "--", "sh", "-c", "exit 3").returncode == 3
    weird = 'we"ird\\name'
    assert sr.run("-n", weird, "--textfile-dir", str(textfile_dir), "--", "true").returncode == 0
    holder, _ = sr.start_holder("-n", "long")
    try:
        code, line = _check(sr, "-n", "ok", "--max-age", "1h")
        assert code == 0 and line.startswith("SINGLERUN OK - default/ok: last success"), line
        assert " | 'default/ok age'=" in line and ";;3600;0" in line
        code, line = _check(sr, "-n", "bad", "--max-age", "1h")
        assert code == 2 and "last run failed (exit 3)" in line, line
        code, line = _check(sr, "-n", "old", "--max-age", "26h", "--warn-age", "25h")
        assert code == 1 and line.startswith("SINGLERUN WARNING - default/old: last success 1d"), (
            line
        )
        code, line = _check(sr, "-n", "old", "--max-age", "24h")
        assert code == 2, line
        past_1s = ("-n", "long", "--max-age", "26h", "--max-duration", "1s")
        wait_for(lambda: _check(sr, *past_1s)[0] == 2, what="the holder past 1 s")
        code, line = _check(sr, *past_1s)
        assert code == 2 and "default/long: running for" in line, line
        code, line = _check(sr, "-n", "long", "--max-age", "26h", "--warn-duration", "1s")
        assert code == 1, line
        code, line = _check(sr, "-n", "never", "--max-age", "1h")
        assert code == 2 and "no successful run" in line, line
        r = sr.run("check", "--max-age", "26h", "--warn-age", "25h", "--json")
        verdicts = json.loads(r.stdout)
        assert (r.returncode, verdicts["status"]) == (2, "CRITICAL")
        by_name = {k["name"]: k["status"] for k in verdicts["keys"]}
        assert by_name == {"ok": "OK", "bad": "CRITICAL", "old": "WARNING", "long": "OK",
                           weird: "OK"}, by_name  # fmt: skip
        r = sr.run("check", "-n", "ok", "--max-age", "nonsense")
        assert r.returncode == 3 and r.stdout.startswith("SINGLERUN UNKNOWN - ")
        # Prometheus' parser reads it; values and escaped labels are what happened.
        r = sr.run("metrics")
        assert r.returncode == 0, r.stderr
        samples = _samples(r.stdout)
        assert samples[("singlerun_last_exit_status", _key("bad"))] == 3
        assert samples[("singlerun_runs_total", _key("bad", outcome="ok"))] == 1
        assert samples[("singlerun_runs_total", _key("bad", outcome="failed"))] == 1
        assert samples[("singlerun_running", _key("long"))] == 1
        assert samples[("singlerun_running", _key("ok"))] == 0
        assert (
            abs(samples[("singlerun_last_success_timestamp_seconds", _key("ok"))] - time.time())
            < 60
        )
        assert samples[("singlerun_last_exit_status", _key(weird))] == 0
        for line in r.stdout.splitlines():
            assert line.startswith(("# HELP singlerun_", "# TYPE singlerun_", "singlerun_")), line
        only_bad = _samples(sr.run("metrics", "-n", "bad").stdout)
        assert {dict(labels)["name"] for _, labels in only_bad} == {"bad"}
    finally:
        stop(holder)
    # --textfile-dir: written atomically at the end of the run, readable by the collector.
    prom = textfile_dir / "singlerun.prom"
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert [p.name for p in textfile_dir.iterdir()] == ["singlerun.prom"]
    written = _samples(prom.read_text())
    assert written[("singlerun_runs_total", _key(weird, outcome="ok"))] == 1
    # The summary: a row per key, a chart of outcomes, no colour off a terminal.
    r = sr.run("history", "--summary")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert rows["default/bad"].split()[1:3] == ["2", "50"]
    assert rows["default/bad"].endswith("×") and "\033[" not in r.stdout
    ascii_out = sr.run("history", "--summary", env={"PYTHONIOENCODING": "ascii"}).stdout
    assert ascii_out.splitlines()[1:] and all(c.isascii() for c in ascii_out)
    assert os.environ.get("NO_COLOR") is None or "\033[" not in r.stdout
