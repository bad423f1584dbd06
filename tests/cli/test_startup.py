"""A run loads only what a run needs: the import list of a real run, checked."""

import subprocess
import sys

# Each of these costs milliseconds that a storm of cron launchers would pay on every run.
NOT_ON_THE_RUN_PATH = [
    "sqlite3",
    "psutil",
    "singlerun.commands",
    "singlerun.store.files.ledger",
    "redis",
    "psycopg",
    "filelock",  # no longer a dependency: flock(2) is called directly (issue 21)
    "hashlib",  # secrets' import of random and hashlib: temporary names use os.urandom
    "secrets",
]


def _imported(sr, *args: str) -> set[str]:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "singlerun", *args],
        capture_output=True,
        text=True,
        env=sr.env,
    )
    return {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}


def test_a_run_imports_no_sqlite3_psutil_or_subcommands(sr):
    modules = _imported(sr, "-n", "x", "--", "true")
    assert "singlerun.runner" in modules and "click" in modules  # the probe works
    assert not modules & set(NOT_ON_THE_RUN_PATH)


def test_a_conflict_imports_no_psutil_while_the_holder_is_plainly_alive(sr):
    holder, _ = sr.start_holder("-n", "x")
    modules = _imported(sr, "-n", "x", "--", "true")
    assert "singlerun.render" in modules
    assert not modules & set(NOT_ON_THE_RUN_PATH)
    holder.terminate()
    holder.wait(10)


def test_status_loads_its_subcommand_on_demand(sr):
    modules = _imported(sr, "status")
    assert {"singlerun.commands", "singlerun.status"} <= modules
