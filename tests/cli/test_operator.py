"""The operator's view and control: status, stop, clean, history, replace, limits."""

import contextlib
import json
import os
import re
import signal
import time

import psutil
import pytest

from tests.conftest import PRINT_SIGNALS, SINGLERUN, read_line, records, stop, wait_for


def _status(sr, *args):
    r = sr.run("status", "--json", *args)
    return r.returncode, json.loads(r.stdout)


def _history(sr, *args):
    r = sr.run("history", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- status ------------------------------------------------------------------------------


def test_status_in_each_state_text_json_and_lsb_codes(sr):
    code, (idle,) = _status(sr, "-n", "k")
    assert (code, idle["state"], idle["group"], idle["last"]) == (3, "idle", "default", None)

    holder, job_pid = sr.start_holder("-n", "k")
    waiter = sr.start("-n", "k", "--wait", "--", "true")
    wait_for(lambda: _status(sr, "-n", "k")[1][0]["waiters"], what="waiter listed")
    code, (running,) = _status(sr, "-n", "k")
    assert code == 0 and running["state"] == "running"
    assert running["pid"] == holder.pid and running["user"] and running["host"]
    assert running["command"] == [*PRINT_SIGNALS, "TERM"]
    assert running["started_at"].endswith("Z") and running["elapsed_s"] >= 0
    assert len(running["job_id"]) == 26
    (w,) = running["waiters"]
    assert w["pid"] == waiter.pid and w["waited_s"] >= 0
    text = sr.run("status").stdout
    assert f"default/k  running  job {running['job_id']} pid {holder.pid}" in text
    assert f"  waiting: pid {waiter.pid} on {w['host']} for " in text
    assert sr.run("status", "-n", "k").returncode == 0

    stop(holder)
    assert waiter.wait(10) == 0
    code, (after,) = _status(sr, "-n", "k")
    assert code == 3 and after["state"] == "idle" and after["last"]["outcome"] == "ok"

    holder, job_pid = sr.start_holder("-n", "k")
    holder.kill()
    holder.wait()
    os.kill(job_pid, signal.SIGKILL)
    os.waitpid(job_pid, 0)
    code, (stale,) = _status(sr, "-n", "k")
    assert (code, stale["state"], stale["pid"]) == (1, "stale", holder.pid)
    assert "default/k  stale  job " in sr.run("status").stdout


def test_status_without_name_lists_all_keys_and_filters_by_group(sr):
    for g, n in (("a", "x"), ("a", "y"), ("b", "x")):
        assert sr.run("-g", g, "-n", n, "--", "true").returncode == 0
    code, entries = _status(sr)
    assert code == 0 and [(e["group"], e["name"]) for e in entries] == [
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
    ]
    assert [e["name"] for e in _status(sr, "-g", "a")[1]] == ["x", "y"]
    assert _status(sr, "-g", "nope") == (0, [])


def test_waiters_are_listed_in_order_while_they_wait(sr):
    holder, _ = sr.start_holder("-n", "q")
    waiters = []
    for _ in range(3):
        waiters.append(sr.start("-n", "q", "--wait", "--", "true"))
        n = len(waiters)
        wait_for(lambda n=n: len(_status(sr, "-n", "q")[1][0]["waiters"]) == n, what="queued")
    listed = [w["pid"] for w in _status(sr, "-n", "q")[1][0]["waiters"]]
    assert listed == [w.pid for w in waiters]
    stop(holder)
    assert [w.wait(10) for w in waiters] == [0, 0, 0]


# -- stop --------------------------------------------------------------------------------


def test_stop_ends_the_job_and_its_grandchild(sr, tmp_path):
    pidfile = tmp_path / "grandchild"
    holder = sr.start("-n", "s", "--", "sh", "-c", f"sleep 100 & echo $! > {pidfile}; wait")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="grandchild")
    grandchild = psutil.Process(int(pidfile.read_text()))
    r = sr.run("stop", "-n", "s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("stopped default/s (job ")
    assert holder.wait(10) == 128 + signal.SIGTERM
    wait_for(
        lambda: not grandchild.is_running() or grandchild.status() == "zombie",
        what="grandchild gone",
    )
    assert _history(sr, "-n", "s")[0]["outcome"] == "killed"
    assert sr.run("stop", "-n", "s").returncode == 3


def test_stop_kills_a_job_that_ignores_sigterm_after_kill_after(sr):
    holder = sr.start("-n", "t", "--", "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
    wait_for(lambda: re.search(r'"child_pid":\d', records(sr.lock_dir)), what="job started")
    t0 = time.monotonic()
    r = sr.run("stop", "-n", "t", "--kill-after", "1s")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert 1.0 <= took < 5
    assert holder.wait(10) == 128 + signal.SIGKILL


def test_stop_gives_up_at_timeout_with_status_1(sr):
    holder = sr.start("-n", "t", "--", "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
    wait_for(lambda: re.search(r'"child_pid":\d', records(sr.lock_dir)), what="job started")
    r = sr.run("stop", "-n", "t", "--timeout", "0.5s", "--kill-after", "30s")
    assert r.returncode == 1 and r.stdout.startswith("still running: default/t")
    assert sr.run("stop", "-n", "t", "--signal", "KILL").returncode == 0
    assert holder.wait(10) == 128 + signal.SIGKILL


def test_stop_after_kill_9_of_singlerun_stops_the_orphaned_job(sr):
    holder, job_pid = sr.start_holder("-n", "o")
    holder.kill()
    holder.wait()
    assert sr.run("stop", "-n", "o").returncode == 0
    wait_for(lambda: os.waitpid(job_pid, os.WNOHANG)[0] == job_pid, what="job reaped")
    assert sr.run("-n", "o", "--", "true").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["stop"],
        ["stop", "-n", ""],
        ["stop", "-n", "x", "--signal", "NOPE"],
        ["status", "-n", "a\nb"],
        ["history", "--limit", "0"],
    ],
)
def test_subcommand_usage_errors(sr, args):
    r = sr.run(*args)
    assert r.returncode == 2 and r.stderr.startswith("singlerun: ") and r.stderr.count("\n") == 1


# -- clean -------------------------------------------------------------------------------


def test_clean_removes_only_stale_records(sr):
    live, _ = sr.start_holder("-n", "live")
    dead, dead_job = sr.start_holder("-n", "dead")
    dead.kill()
    dead.wait()
    os.kill(dead_job, signal.SIGKILL)
    os.waitpid(dead_job, 0)
    r = sr.run("clean", "--dry-run")
    assert r.stdout.startswith("would remove stale record of default/dead: job ")
    assert len(list(sr.lock_dir.glob("*.rec"))) == 2
    r = sr.run("clean")
    assert r.returncode == 0 and r.stdout.count("removed stale record of default/dead") == 1
    assert [e["state"] for e in _status(sr)[1]] == ["idle", "running"]
    assert _history(sr, "-n", "dead")[0]["outcome"] == "lost"
    assert sr.run("clean").stdout == ""
    stop(live)


def test_clean_removes_the_tickets_sigkilled_waiters_left(sr):
    """Issue 18.7: a SIGKILLed waiter's ticket stayed in the queue directory for ever when
    no other waiter came after it (a successor removes it); `clean` removes it, never a
    live waiter's."""
    holder, _ = sr.start_holder("-n", "w")
    live = sr.start("-n", "w", "--wait", "--", "true")
    wait_for(lambda: len(list(sr.lock_dir.glob("*.queue/0*"))) == 1, what="queued")
    dead = sr.start("-n", "w", "--wait", "--", "true")
    wait_for(lambda: len(list(sr.lock_dir.glob("*.queue/0*"))) == 2, what="queued")
    dead.kill()
    dead.wait()
    assert len(list(sr.lock_dir.glob("*.queue/0*"))) == 2  # nobody after it to remove it
    assert sr.run("clean").returncode == 0
    assert len(list(sr.lock_dir.glob("*.queue/0*"))) == 1  # the live one's
    stop(holder)
    assert live.wait(10) == 0
    assert not list(sr.lock_dir.glob("*.queue/0*"))


# -- history and outcomes ----------------------------------------------------------------


def test_fifty_runs_finishing_at_once_leave_fifty_rows(sr, tmp_path):
    gate = tmp_path / "go"
    script = f"while [ ! -e {gate} ]; do sleep 0.02; done"
    procs = [sr.start("-n", f"k{i}", "--", "sh", "-c", script) for i in range(50)]
    wait_for(lambda: len(list(sr.lock_dir.glob("*.rec"))) == 50, timeout=30, what="all running")
    gate.touch()
    assert [p.wait(30) for p in procs] == [0] * 50
    errors = "".join(p.stderr.read() for p in procs)
    rows = _history(sr, "--limit", "100")
    assert len(rows) == 50 and {r["outcome"] for r in rows} == {"ok"}, errors
    assert errors == ""
    assert len({r["job_id"] for r in rows}) == 50


def test_outcomes(sr):
    assert sr.run("-n", "ok", "--", "true").returncode == 0
    assert sr.run("-n", "failed", "--", "sh", "-c", "exit 3").returncode == 3
    assert sr.run("-n", "killed", "--", "sh", "-c", "kill -KILL $$").returncode == 137
    assert sr.run("-n", "timeout", "--max-runtime", "0.2", "--", "sleep", "30").returncode == 124
    holder, _ = sr.start_holder("-n", "replaced")
    assert sr.run("-n", "replaced", "--replace", "--", "true").returncode == 0
    holder.wait(10)
    got = {(r["name"], r["outcome"], r["exit_status"]) for r in _history(sr)}
    assert {
        ("ok", "ok", 0),
        ("failed", "failed", 3),
        ("killed", "killed", 137),
        ("timeout", "timeout", 124),
        ("replaced", "replaced", 0),
    } <= got
    assert ("replaced", "ok", 0) in got  # the replacement itself
    text = sr.run("history", "--limit", "2").stdout.splitlines()
    assert len(text) == 2 and text[0].endswith("ok") and " default/replaced " in text[0]


def test_unwritable_history_warns_but_runs(sr):
    (sr.lock_dir / "history.log").mkdir()  # the journal a run appends to: not a file
    r = sr.run("-n", "k", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (0, "ran\n")
    assert r.stderr.startswith("singlerun: warning: cannot write the run history")
    assert r.stderr.count("\n") == 1


def test_history_is_journalled_then_folded_into_the_ledger(sr):
    from singlerun.store.files.journal import FOLD_AT

    assert sr.run("-n", "k", "--", "true").returncode == 0
    assert not (sr.lock_dir / "history.db").exists()  # a run does not touch sqlite3
    assert _history(sr, "-n", "k")[0]["outcome"] == "ok"  # read from the journal
    long = "x" * (FOLD_AT // 2)
    for code in (1, 2):  # two rows with long command lines pass the fold threshold
        assert sr.run("-n", "k", "--", "sh", "-c", f"exit {code}", long).returncode == code
    assert (sr.lock_dir / "history.db").exists()
    assert (sr.lock_dir / "history.log").stat().st_size == 0
    rows = _history(sr, "-n", "k")
    assert [(r["outcome"], r["exit_status"]) for r in rows] == [
        ("failed", 2),
        ("failed", 1),
        ("ok", 0),
    ]


# -- limits ------------------------------------------------------------------------------


def test_max_runtime_exits_124_within_about_two_seconds(sr):
    t0 = time.monotonic()
    r = sr.run("-n", "long", "--max-runtime", "1s", "--", "sleep", "30")
    assert r.returncode == 124 and time.monotonic() - t0 < 2 * 2
    assert "exceeded --max-runtime" in r.stderr


def test_max_runtime_escalates_to_sigkill(sr):
    t0 = time.monotonic()
    r = sr.run(
        "-n",
        "stubborn",
        "--max-runtime",
        "0.3",
        "--kill-after",
        "0.5",
        "--signal",
        "INT",
        "--",
        "sh",
        "-c",
        "trap '' INT TERM; while :; do sleep 0.05; done",
    )
    assert r.returncode == 124 and 0.8 <= time.monotonic() - t0 < 4


def test_max_concurrent_runs_three_and_refuses_or_queues_the_fourth(sr, tmp_path):
    holders = [sr.start_holder("-n", "m", "--max-concurrent", "3")[0] for _ in range(3)]
    r = sr.run("-n", "m", "--max-concurrent", "3", "--", "true")
    assert r.returncode == 75 and "3 instances" in r.stderr
    _, (e,) = _status(sr, "-n", "m")
    assert e["state"] == "running" and len(e["holders"]) == 3
    out = tmp_path / "fourth"
    fourth = sr.start("-n", "m", "--max-concurrent", "3", "--wait", "--", "touch", str(out))
    wait_for(lambda: _status(sr, "-n", "m")[1][0]["waiters"], what="fourth queued")
    assert not out.exists()
    stop(holders[1])
    assert fourth.wait(10) == 0 and out.exists()
    for h in holders:
        stop(h)


def test_replace_stops_the_old_instance_and_runs(sr):
    holder, _ = sr.start_holder("-n", "r")
    r = sr.run("-n", "r", "--replace", "--", "echo", "new")
    assert (r.returncode, r.stdout) == (0, "new\n")
    assert holder.wait(10) == 0  # its job handled the SIGTERM and exited 0
    assert sr.run("-n", "r", "--replace", "--", "true").returncode == 0  # nothing to replace


def test_replace_gives_up_on_a_lock_held_by_a_process_the_record_does_not_name(sr):
    # The job leaves a daemon (own session) that inherited the lock; then singlerun and the
    # job are killed. Nothing named in the record is left to stop: --replace must not spin.
    holder = sr.start("-n", "d", "--", "sh", "-c", "setsid sleep 60 & sleep 60")
    wait_for(lambda: re.search(r'"child_pid":\d', records(sr.lock_dir)), what="job started")
    job_pid = json.loads(records(sr.lock_dir).split("\n", 1)[1])["child_pid"]
    holder.kill()
    holder.wait()
    os.kill(job_pid, signal.SIGKILL)
    os.waitpid(job_pid, 0)
    r = sr.run("-n", "d", "--replace", "--", "echo", "ran", timeout=30)
    assert (r.returncode, r.stdout) == (75, "")
    assert "one it started still holds the lock" in r.stderr


def test_stop_of_a_stopped_job_lets_it_handle_the_signal(sr):
    # A job stopped (SIGSTOP, as by Ctrl-Z) gets SIGCONT after the signal: it handles the
    # SIGTERM and exits on its own, well before --kill-after would SIGKILL it.
    holder, job_pid = sr.start_holder("-n", "frozen")
    os.kill(job_pid, signal.SIGSTOP)
    t0 = time.monotonic()
    r = sr.run("stop", "-n", "frozen", "--kill-after", "20s", "--timeout", "30s")
    assert r.returncode == 0 and time.monotonic() - t0 < 10
    assert holder.wait(10) == 0  # print_signals exits 0 on TERM: it was not SIGKILLed
    assert "TERM" in holder.stdout.read()


def test_status_does_not_depend_on_the_history(sr):
    holder, _ = sr.start_holder("-n", "nh")
    (sr.lock_dir / "history.db").mkdir()  # a ledger that cannot be opened
    r = sr.run("status", "--json", "-n", "nh")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["state"] == "running"
    assert r.stderr.startswith("singlerun: warning: ") and r.stderr.count("\n") == 1
    stop(holder)


def test_the_ledger_keeps_a_bounded_number_of_runs(tmp_path, monkeypatch):
    from singlerun import history
    from singlerun.store.files import journal, ledger
    from singlerun.store.files.lockdir import LockDir

    rows = [
        history.Run(f"J{i:02d}", "g", "n", "h", 1, 1000.0 + i, 1001.0 + i, 0, "ok", "[]")
        for i in range(5)
    ]
    journal.append(LockDir(str(tmp_path)), tuple(rows))
    ledger.Ledger(LockDir(str(tmp_path))).fold(keep=3)
    assert [r.job_id for r in ledger.Ledger(LockDir(str(tmp_path))).runs()] == ["J04", "J03", "J02"]


def test_stop_never_signals_a_process_on_the_word_of_an_unverifiable_record(sr):
    # Someone with write access to the directory plants a record naming an unrelated
    # process, without a start time, for a key whose lock they hold.
    import subprocess

    victim = subprocess.Popen(["sleep", "60"])
    lock = sr.lock_dir / "default.forged.lock"
    locker = subprocess.Popen(["flock", str(lock), "sleep", "60"])
    wait_for(lambda: sr.run("status", "-n", "forged").returncode in (0, 1), what="locked")
    forged = {"job_id": "FORGED", "group": "default", "name": "forged", "pid": victim.pid,
              "host": os.uname().nodename, "user": "x", "started_at": time.time()}  # fmt: skip
    body = json.dumps(forged)
    (sr.lock_dir / "default.forged.rec").write_text(f"singlerun-record 1\n{body}\n")
    wait_for(lambda: sr.run("status", "-n", "forged").returncode == 0, what="running")
    r = sr.run("stop", "-n", "forged", "--kill-after", "1s", "--timeout", "3s")
    assert r.returncode == 1
    assert "not acting on job FORGED's record: it has no process start time" in r.stderr
    assert victim.poll() is None  # untouched
    r = sr.run("-n", "forged", "--replace", "--", "true")
    assert r.returncode == 75 and "cannot replace it" in r.stderr
    assert victim.poll() is None
    victim.kill()
    locker.kill()


def test_stop_with_several_holders_stops_them_at_once_and_reports_each(sr):
    # Three holders that ignore SIGTERM: stopped one after the other, they would take three
    # times --kill-after; at once, about one.
    job = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]
    holders = [sr.start("-n", "m", "--max-concurrent", "3", "--", *job) for _ in range(3)]
    for h in holders:
        assert read_line(h) == "ready"
    started = time.monotonic()
    r = sr.run("stop", "-n", "m", "--kill-after", "3s", "--timeout", "30s")
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("stopped default/m (job ") == 3, r.stdout
    assert took < 6.5, took  # 3 x 3 s if one after the other
    for h in holders:
        assert h.wait(10) == 128 + signal.SIGKILL


def test_history_size_bounds_the_ledger_from_the_command_line(sr):
    from singlerun.history import Run, journal_line
    from singlerun.store.files.journal import FOLD_AT

    old = [Run(f"OLD{i:04d}", "default", "k", "h", 1, 1000.0 + i, 1001.0 + i, 0, "ok", "[]")
           for i in range(300)]  # fmt: skip
    filler = b"".join(journal_line(r) for r in old)
    filler += b"\n" * (FOLD_AT - len(filler))  # blank lines: skipped, but they fill the journal
    (sr.lock_dir / "history.log").write_bytes(filler)
    r = sr.run("-n", "k", "--history-size", "150", "--", "true")  # finds the journal full: folds
    assert r.returncode == 0, r.stderr
    assert (sr.lock_dir / "history.log").stat().st_size == 0
    runs = json.loads(sr.run("history", "--json", "-n", "k", "--limit", "1000").stdout)
    assert len(runs) == 150 and runs[-1]["job_id"] == "OLD0151"  # the newest 150 of 301
    for bad in ("99", "x", "20000000"):
        r = sr.run("-n", "k", "--history-size", bad, "--", "true")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (bad, r.stderr)
    r = sr.run("-n", "k", "--", "true", env={"SINGLERUN_HISTORY_SIZE": "5"})
    assert r.returncode == 2 and "history-size" in r.stderr, r.stderr


def test_stop_of_a_job_on_another_host_says_at_once_that_it_cannot(sr):
    """Issue 20: a lock directory shared between hosts (NFS) holds a record naming another
    host. Nobody there reads stop requests from a lock directory, so `stop` waited its whole
    --timeout and printed `still running` on stdout; it says why at once, on stderr."""
    import subprocess

    lock = sr.lock_dir / "default.far.lock"
    locker = subprocess.Popen(["flock", str(lock), "sleep", "60"])
    wait_for(lambda: sr.run("status", "-n", "far").returncode in (0, 1), what="locked")
    far = {"job_id": "FARJOB", "group": "default", "name": "far", "pid": 4242,
           "pid_started": 1.0, "host": "elsewhere.example", "user": "x",
           "started_at": time.time()}  # fmt: skip
    (sr.lock_dir / "default.far.rec").write_text(f"singlerun-record 1\n{json.dumps(far)}\n")
    t0 = time.monotonic()
    r = sr.run("stop", "-n", "far", "--timeout", "30s")
    assert time.monotonic() - t0 < 5
    assert (r.returncode, r.stdout) == (1, ""), (r.returncode, r.stdout)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("singlerun: cannot stop default/far")
    assert "runs on host elsewhere.example" in r.stderr
    locker.kill()


def test_check_is_unknown_when_the_store_cannot_be_read(sr, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(sr.lock_dir)
    r = sr.run("check", "--lock-dir", str(link), "-n", "x", "--max-age", "1h")
    assert r.returncode == 3, r.stderr
    assert r.stdout.startswith("SINGLERUN UNKNOWN - refusing lock directory")
    assert r.stderr.startswith("singlerun: refusing lock directory")
    r = sr.run("check", "--backend", "redis://h:0/0", "-n", "x", "--max-age", "1h")
    assert r.returncode == 3 and r.stdout.startswith("SINGLERUN UNKNOWN - invalid --backend")


@pytest.mark.parametrize("no_color", [None, "1"])
def test_the_summary_is_coloured_only_on_a_terminal_without_no_color(sr, no_color):
    import pty
    import subprocess

    assert sr.run("-n", "c", "--", "true").returncode == 0
    assert sr.run("-n", "c", "--", "false").returncode == 1
    env = {**sr.env, "LC_ALL": "C.UTF-8"}
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = no_color
    main, tty = pty.openpty()
    proc = subprocess.Popen([*SINGLERUN, "history", "--summary"], stdout=tty, stderr=tty, env=env)
    os.close(tty)
    out = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's other side is closed
        while chunk := os.read(main, 4096):
            out += chunk
    os.close(main)
    assert proc.wait(10) == 0
    text = out.decode()
    assert "default/c" in text and "×" in text, text
    assert ("\033[31m×" in text) is (no_color is None), text
