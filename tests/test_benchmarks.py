"""Every benchmark script runs, in its quick mode, so that none can rot unnoticed."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert {p.name for p in BENCHMARKS} >= {"startup.py", "queueing.py", "supervise.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_runs_and_prints_tables(script, tmp_path):
    # Run as the README says (`.venv/bin/python benchmarks/X.py`), from another directory:
    # a script named like a standard module (operator.py once) would shadow it and crash.
    r = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "| ---" in r.stdout, r.stdout
