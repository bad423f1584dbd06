"""Running a job: exit status, environment, stdio, exec failures, usage errors."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SINGLERUN, wait_for


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_status_is_the_commands(sr, code):
    assert sr.run("-n", "x", "--", "sh", "-c", f"exit {code}").returncode == code


@pytest.mark.parametrize(("sig", "code"), [("TERM", 143), ("KILL", 137), ("USR1", 138)])
def test_killed_by_signal_is_128_plus_n(sr, sig, code):
    assert sr.run("-n", "x", "--", "sh", "-c", f"kill -{sig} $$").returncode == code


def test_a_job_killed_by_sigint_makes_singlerun_die_of_sigint(sr):
    # As timeout(1) does: a calling shell sees a SIGINT death (and stops its loop); $? is 130.
    r = sr.run("-n", "x", "--", "sh", "-c", "kill -INT $$")
    assert r.returncode == -signal.SIGINT
    assert sr.run("-n", "x", "--", "true").returncode == 0  # the lock was released first
    shell = " ".join(SINGLERUN) + " -n x -- sh -c 'kill -INT $$'; echo $?"
    r = subprocess.run(["sh", "-c", shell], env=sr.env, capture_output=True, text=True)
    assert r.stdout == "130\n"
    rows = json.loads(sr.run("history", "--json", "-n", "x", "--limit", "3").stdout)
    assert [(row["outcome"], row["exit_status"]) for row in rows][1:] == [
        ("ok", 0),
        ("killed", 130),
    ]


def test_a_job_killed_by_sigquit_makes_singlerun_die_of_sigquit(sr, tmp_path):
    # Issue 20: Ctrl-\\ ended the job with 131, but singlerun exited 131 instead of dying of
    # SIGQUIT, so bash printed no "Quit" and a loop around it went on.
    r = sr.run("-n", "x", "--", "sh", "-c", "kill -QUIT $$", cwd=tmp_path)
    assert r.returncode == -signal.SIGQUIT, r.stderr
    assert sr.run("-n", "x", "--", "true").returncode == 0  # the lock was released first
    shell = " ".join(SINGLERUN) + " -n x -- sh -c 'kill -QUIT $$'; echo $?"
    r = subprocess.run(["sh", "-c", shell], env=sr.env, capture_output=True, text=True)
    assert r.stdout == "131\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("core")]  # no core file


def test_the_job_does_not_inherit_the_runs_options(sr):
    env = {
        "SINGLERUN_NAME": "outer",
        "SINGLERUN_GROUP": "g",
        "SINGLERUN_WAIT_TIMEOUT": "1s",
        "SINGLERUN_MAX_RUNTIME": "1h",
        "SINGLERUN_QUIET": "1",
        "SINGLERUN_JOB_ID": "stale",
    }
    r = sr.run("--", "sh", "-c", "env | grep ^SINGLERUN_ | sort", env=env)
    got = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert "SINGLERUN_NAME" not in got and "SINGLERUN_GROUP" not in got
    assert "SINGLERUN_WAIT_TIMEOUT" not in got and "SINGLERUN_MAX_RUNTIME" not in got
    assert got["SINGLERUN_LOCK_DIR"] == str(sr.lock_dir) and got["SINGLERUN_QUIET"] == "1"
    assert (got["SINGLERUN_JOB_NAME"], got["SINGLERUN_JOB_GROUP"]) == ("outer", "g")
    assert got["SINGLERUN_JOB_ID"] != "stale"
    # So a singlerun inside the job is configured by its own arguments only:
    inner = " ".join(SINGLERUN) + " -- sh -c 'echo $SINGLERUN_JOB_NAME'"
    r = sr.run("-n", "outer2", "--", "sh", "-c", inner, env={"SINGLERUN_NAME": "outer2"})
    assert r.returncode == 0 and r.stdout.startswith("sh-")  # its own, derived, name


def test_signals_ignored_at_start_stay_ignored_for_the_job(sr):
    # nohup semantics: what singlerun's caller ignored, the job ignores too.
    def ignore_int():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    r = sr.run("-n", "x", "--", "sh", "-c", "kill -INT $$; echo survived", preexec_fn=ignore_int)
    assert (r.returncode, r.stdout) == (0, "survived\n")


def test_command_not_found_is_127(sr, lock_dir):
    r = sr.run("-n", "x", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert r.stderr == "singlerun: no-such-command-xyz: command not found\n"
    assert not list(lock_dir.glob("*.rec"))


def test_not_executable_is_126(sr, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = sr.run("-n", "x", "--", str(script))
    assert r.returncode == 126
    assert r.stderr.startswith("singlerun: ") and "Permission denied" in r.stderr
    assert sr.run("-n", "x", "--", str(tmp_path)).returncode == 126  # a directory


def test_environment_cwd_and_stdio(sr, tmp_path):
    r = sr.run(
        "-n",
        "env",
        "-g",
        "grp",
        "--",
        "sh",
        "-c",
        'echo "$SINGLERUN_JOB_ID|$SINGLERUN_JOB_NAME|$SINGLERUN_JOB_GROUP|$MYVAR|$(pwd)"; '
        "cat; echo err >&2",
        input="from stdin\n",
        cwd=tmp_path,
        env={"MYVAR": "kept"},
    )
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    job_id, name, group, var, cwd = first.split("|")
    assert len(job_id) <= 32 and job_id.isalnum()
    assert (name, group, var, cwd) == ("env", "grp", "kept", str(tmp_path))
    assert second == "from stdin"
    assert r.stderr == "err\n"


def test_command_arguments_are_not_options(sr):
    r = sr.run("-n", "x", "printf", "%s|", "-n", "--name", "--", "-q")
    assert r.returncode == 0 and r.stdout == "-n|--name|--|-q|"


def test_explicit_run_subcommand(sr):
    r = sr.run("run", "-n", "x", "--", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n")


def test_derived_key_conflicts_like_run_one(sr):
    holder = sr.start("--", "sleep", "30")
    wait_for(lambda: list(sr.lock_dir.glob("*.rec")), what="record")
    r = sr.run("--", "sleep", "30")
    assert r.returncode == 75 and "default/sleep-" in r.stderr
    assert sr.run("--", "sleep", "0").returncode == 0  # other arguments, other key
    assert sr.run("--", "true").returncode == 0
    holder.kill()
    holder.wait()


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus", "--", "true"],
        ["--wait-timeout", "soon", "--", "true"],
        ["--conflict-exit-code", "300", "--", "true"],
        ["-n", "", "--", "true"],
        ["-n", "a\tb", "--", "true"],
        ["-n", "x" * 201, "--", "true"],
        ["-g", "", "-n", "x", "true"],
        [],
        ["-n", "x"],
    ],
)
def test_usage_errors_exit_2_with_one_line(sr, args):
    r = sr.run(*args)
    assert r.returncode == 2, r
    assert r.stderr.startswith("singlerun: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_options_from_environment(sr):
    holder = sr.start("-n", "envkey", "--", "sleep", "30")
    wait_for(lambda: list(sr.lock_dir.glob("*.rec")), what="record")
    env = {"SINGLERUN_NAME": "envkey", "SINGLERUN_CONFLICT_EXIT_CODE": "9"}
    assert sr.run("--", "true", env=env).returncode == 9
    r = sr.run("--", "true", env={"SINGLERUN_NAME": "envkey", "SINGLERUN_QUIET": "1"})
    assert (r.returncode, r.stderr) == (75, "")
    r = sr.run("-n", "envkey", "--", "true", env={"SINGLERUN_WAIT_TIMEOUT": "200ms"})
    assert r.returncode == 75 and "gave up waiting" in r.stderr
    r = sr.run("-n", "other", "--", "true", env={"SINGLERUN_GROUP": "g2", "SINGLERUN_VERBOSE": "1"})
    assert r.returncode == 0 and "g2/other: acquired" in r.stderr
    holder.kill()
    holder.wait()


def test_version_help_and_python_m(sr):
    r = sr.run("--version")
    assert r.returncode == 0 and r.stdout.startswith("singlerun ")
    r = sr.run("--help")
    assert r.returncode == 0 and "--wait-timeout" in r.stdout and "Examples" in r.stdout
    # sr.run is `python -m singlerun`; the installed console script behaves the same.
    script = Path(sys.executable).with_name("singlerun")
    r = subprocess.run([script, "--version"], capture_output=True, text=True, env=sr.env)
    assert (r.returncode, r.stdout) == (0, sr.run("--version").stdout)


def test_lock_dir_created_private(sr, tmp_path):
    d = tmp_path / "new" / "locks"
    assert sr.run("--lock-dir", str(d), "-n", "x", "true").returncode == 0
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
