"""--retry and --respawn: attempts that hold the key throughout (issue 13)."""

import itertools
import json
import signal
import time

import pytest

from tests.conftest import read_line, wait_for

# Fails until the third attempt: the count is kept in a file.
FLAKY = (
    'n=$(($(cat "$1" 2>/dev/null || echo 0) + 1)); echo $n > "$1"; '
    'echo "start $(date +%s.%N) attempt $SINGLERUN_ATTEMPT"; [ $n -ge 3 ]'
)


def _status(sr, name):
    return json.loads(sr.run("status", "--json", "-n", name).stdout)[0]


def test_fails_twice_then_succeeds_three_rows(sr, tmp_path):
    count = tmp_path / "n"
    r = sr.run(
        "-n",
        "f",
        "--retry",
        "5",
        "--retry-delay",
        "100ms",
        "--",
        "sh",
        "-c",
        FLAKY,
        "sh",
        str(count),
    )
    assert r.returncode == 0, r.stderr
    assert [line.split()[-1] for line in r.stdout.splitlines()] == ["1", "2", "3"]
    rows = json.loads(sr.run("history", "--json", "-n", "f").stdout)
    assert [(row["attempt"], row["outcome"]) for row in rows] == [
        (3, "ok"),
        (2, "failed"),
        (1, "failed"),
    ]
    assert len({row["run_id"] for row in rows}) == 1 and len({row["job_id"] for row in rows}) == 3
    assert r.stderr.count("singlerun: default/f: attempt ") == 2


def test_exit_status_is_the_last_attempts_and_quiet_still_notes_failures(sr):
    r = sr.run("-q", "-n", "q", "--retry", "2", "--retry-delay", "50ms", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert r.stderr.count("\n") == 2 and "attempt 1 ended: failed, status 3" in r.stderr
    # A run whose final attempt succeeds says nothing with -q.
    r = sr.run("-q", "-n", "q", "--retry", "2", "--", "true")
    assert (r.returncode, r.stderr) == (0, "")


def test_the_key_is_held_during_the_delay_and_status_says_so(sr, tmp_path):
    count = tmp_path / "n"
    runner = sr.start(
        "-n", "h", "--retry", "3", "--retry-delay", "3s", "--", "sh", "-c", FLAKY, "sh", str(count)
    )
    assert read_line(runner).endswith("attempt 1")
    entry = wait_for(lambda: (e := _status(sr, "h"))["next_attempt_at"] and e, what="delay")
    assert entry["state"] == "running" and entry["attempt"] == 1
    assert "next attempt at" in sr.run("status", "-n", "h").stdout
    assert sr.run("-n", "h", "--", "true").returncode == 75  # a contender in the delay
    # stop ends the whole loop at once, during the delay.
    t0 = time.monotonic()
    r = sr.run("stop", "-n", "h")
    assert r.returncode == 0 and time.monotonic() - t0 < 2.5
    assert runner.wait(5) == 1  # the last attempt's status
    assert count.read_text().strip() == "1"


def test_respawn_restarts_and_sigterm_ends_it_with_one_sigterm(sr, tmp_path):
    log = tmp_path / "log"
    # Exits 0 at once three times, then runs until signalled.
    job = (
        f"n=$(grep -c start {log} 2>/dev/null); echo start >> {log}; "
        f'trap "echo TERM >> {log}; exit 0" TERM; '
        'if [ "${n:-0}" -ge 3 ]; then sleep 30 & wait; else sleep 0.1 & wait; fi'
    )
    runner = sr.start("-n", "rs", "--respawn", "--retry-delay", "50ms", "--", "sh", "-c", job)
    wait_for(lambda: log.exists() and log.read_text().count("start") >= 4, what="4 starts")
    assert _status(sr, "rs")["attempt"] == 4
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(10) == 0  # the last attempt handled its SIGTERM and exited 0
    # Four attempts, the last one signalled once, and no fifth started before singlerun
    # exited; the key is free (no attempt outlived it).
    assert log.read_text().split() == ["start"] * 4 + ["TERM"]
    assert sr.run("status", "-n", "rs").returncode == 3


def test_backoff_doubles(sr, tmp_path):
    job = "date +%s.%N; exit 1"
    r = sr.run("-n", "b", "--retry", "3", "--retry-delay", "200ms", "--", "sh", "-c", job)
    assert r.returncode == 1
    t = [float(x) for x in r.stdout.split()]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert len(gaps) == 3
    # 0.2, 0.4, 0.8 s each ±20 %, plus start-up; generous bounds.
    assert 0.15 < gaps[0] < 1.0 and gaps[1] > gaps[0] * 1.2 and gaps[2] > gaps[1] * 1.2


def test_max_runtime_is_per_attempt_and_124_is_not_retried(sr):
    r = sr.run(
        "-n",
        "m",
        "--retry",
        "3",
        "--max-runtime",
        "300ms",
        "--kill-after",
        "1s",
        "--",
        "sleep",
        "5",
    )
    assert r.returncode == 124
    rows = json.loads(sr.run("history", "--json", "-n", "m").stdout)
    assert [row["outcome"] for row in rows] == ["timeout"]


@pytest.mark.parametrize(
    "args",
    [["--retry", "-1"], ["--retry-delay", "x"], ["--retry", "x"], ["--retry-max-delay", "400d"]],
)
def test_bad_values_are_usage_errors(sr, args):
    r = sr.run("-n", "x", *args, "--", "true")
    assert r.returncode == 2 and r.stderr.startswith("singlerun: ") and r.stderr.count("\n") == 1


def test_options_from_the_environment(sr, tmp_path):
    env = {"SINGLERUN_RETRY": "2", "SINGLERUN_RETRY_DELAY": "50ms"}
    r = sr.run("-n", "e", "--", "sh", "-c", "echo $SINGLERUN_ATTEMPT; exit 1", env=env)
    assert (r.returncode, r.stdout.split()) == (1, ["1", "2", "3"])
