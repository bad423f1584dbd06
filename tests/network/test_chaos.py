"""Chaos across the network: contenders on three "hosts" (each its own UTS namespace, host
name and lock directory) loop on one key through a proxy while a chaos thread SIGKILLs
and SIGSTOPs their singlerun, cuts or black-holes the proxy, pauses and restarts the
server (Redis loses every key) and drops its clients' connections. The jobs log their
fencing tokens; an overlap detector must count zero overlaps, tokens must strictly
increase in the order the jobs started, every stderr line must be a `singlerun: ` line
(no traceback), and every history row must agree with how its launch ended. Replay with
CHAOS_SEED=<seed> (the timing is the machine's); NETWORK_CHAOS_RUNS sets the number of
launches per backend (TORTURE_LONG=1: 3000, CI mode: 100; PostgreSQL's cost more, so it
gets half in CI mode)."""

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.conftest import SINGLERUN
from tests.network.proxy import Proxy
from tests.torture.report import FIGURES, LONG

# CI mode is a smoke test that keeps the suite within its time (docs/ARCHITECTURE.md);
# overlaps are hunted by the long mode, run before a store's issue is resolved.
RUNS = int(os.environ.get("NETWORK_CHAOS_RUNS") or (3000 if LONG else 100))
CONTENDERS = 3

CHAOS_JOB = str(Path(__file__).parents[1] / "helpers" / "chaos_job.sh")
ACTIONS = ("kill", "freeze", "pause", "cut", "blackhole", "restart", "drop", "none")
# Faults that take a waiter's connection or server away (it must survive and keep its place).
DROPS = ("pause", "cut", "blackhole", "restart", "drop")


@dataclass
class Launch:
    n: int
    proc: subprocess.Popen
    started: float  # time.monotonic() when it was started
    pidfd: int | None = None
    code: int | None = None
    err: str = ""
    ended: float = 0.0  # time.monotonic() when it ended
    waited_through: set[str] = field(default_factory=set)  # faults it waited through


@dataclass
class Shared:
    total: int
    budget: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    launches: list[Launch] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)  # when the server was killed


def _on_host(host, argv):
    """`argv` started as if on another machine: its own UTS namespace and host name."""
    return ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *argv]


def _contender(host, argv, env, shared, rng):
    env = {**env, "SINGLERUN_LOCK_DIR": env["SINGLERUN_LOCK_DIR"] + "-" + host}
    while not shared.stop.is_set():
        with shared.lock:
            if shared.budget <= 0:
                return
            shared.budget -= 1
            n = len(shared.launches)
            # One job in ten outlasts the 1 s lease: a frozen or killed singlerun then matters.
            seconds = "1.5" if rng.random() < 0.1 else "0.02"
            p = subprocess.Popen(
                _on_host(host, [*argv, seconds, "chaos-job"]),
                env={**env, "CHAOS_LAUNCH": str(n)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            # Signalled through a pidfd: a PID signalled by number after its process was
            # reaped may already name another process (a job that would then stay stopped).
            launch = Launch(n, p, time.monotonic(), os.pidfd_open(p.pid))
            shared.launches.append(launch)
        _, err = p.communicate()
        with shared.lock:
            os.close(launch.pidfd)
            launch.pidfd, launch.code, launch.err = None, p.returncode, err
            launch.ended = time.monotonic()


def _signal(launch, sig, lock):
    with lock:
        if launch.pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(launch.pidfd, sig)


def _waiting(launch):
    """Started a while ago, and its job not (yet): a waiter, as far as the process table
    tells (a singlerun between its job's end and its own is rare and brief)."""
    try:
        proc = psutil.Process(launch.proc.pid)
        return time.time() - proc.create_time() > 0.5 and not proc.children()
    except psutil.Error:
        return False


def _chaos(rng, shared, server, proxy, counts):
    while not shared.stop.is_set():
        time.sleep(rng.uniform(0.05, 0.25))
        # A restart is rarer: each costs the server's start and the grace of its new epoch.
        action = rng.choices(ACTIONS, weights=(5, 5, 5, 4, 3, 1, 3, 5))[0]
        with shared.lock:
            live = [x for x in shared.launches if x.pidfd is not None]
        if action in DROPS:
            for launch in live:
                if _waiting(launch):
                    launch.waited_through.add(action)
        if action in ("kill", "freeze") and live:
            victim = rng.choice(live)
            if action == "kill":
                _signal(victim, signal.SIGKILL, shared.lock)
            else:
                _signal(victim, signal.SIGSTOP, shared.lock)
                time.sleep(rng.uniform(0.2, 2.0))
                _signal(victim, signal.SIGCONT, shared.lock)
        elif action == "pause":
            server.pause()
            time.sleep(rng.uniform(0.1, 1.5))
            server.resume()
        elif action in ("cut", "blackhole"):  # connections closed, or left open and silent
            proxy.cut() if action == "cut" else proxy.blackhole()
            time.sleep(rng.uniform(0.1, 1.0))
            proxy.heal()
        elif action == "restart":  # Redis: every key lost; PostgreSQL: a crash, data kept
            if shared.budget < shared.total // 5:
                continue  # the last fifth's history rows are checked (a Redis restart wipes)
            shared.restarts.append(time.monotonic())
            server.restart()
        elif action == "drop":  # CLIENT KILL, pg_terminate_backend
            with contextlib.suppress(Exception):
                server.drop_clients()
        counts[action] += 1


def test_chaos_no_overlap_and_increasing_tokens(rr, server, ns, tmp_path):
    seed = int(os.environ.get("CHAOS_SEED") or time.time_ns() % 10**12)
    print(f"chaos seed: CHAOS_SEED={seed}")
    rng = random.Random(seed)
    box = tmp_path / "box"
    box.mkdir()
    runs = RUNS if server.kind == "redis" or LONG else RUNS // 2
    proxy = Proxy(server.port)
    env = {**rr.env, "SINGLERUN_BACKEND": server.url(ns, port=proxy.port)}
    env["SINGLERUN_LOCK_DIR"] = str(tmp_path / "locks")
    argv = [*SINGLERUN, "-q", "-n", "chaos", "--wait-timeout", "5s", "--lease-ttl", "1s"]
    argv += ["--history-size", "1000000"]  # every launch's row is checked
    argv += ["--", "sh", CHAOS_JOB, str(box)]
    shared = Shared(runs, runs)
    counts = dict.fromkeys(ACTIONS, 0)
    chaos = threading.Thread(target=_chaos, args=(rng, shared, server, proxy, counts), daemon=True)
    workers = [
        threading.Thread(
            target=_contender,
            args=(f"chaos-h{i}", argv, env, shared, random.Random(rng.random())),
        )
        for i in range(CONTENDERS)
    ]
    chaos.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(None if LONG else 600)
    shared.stop.set()
    chaos.join(10)
    server.resume()
    proxy.close()
    # Jobs the watchdog killed may outlive their singlerun by a moment: wait, then check.
    deadline = time.monotonic() + 10
    # Ours only (orphans come back to this process, a subreaper): tests run side by side.
    ours = psutil.Process().children
    while left := [p for p in ours(recursive=True) if _safe(p) and "chaos-job" in _cmd(p)]:
        alive = [(p.pid, p.status(), _cmd(p)) for p in left if _safe(p)]
        assert time.monotonic() < deadline, ("a job outlived its singlerun and its lease", alive)
        time.sleep(0.05)
    tokens = [int(t) for t in _lines(box / "tokens")]
    violations = _lines(box / "violations")
    jobs = dict(line.split() for line in _lines(box / "jobs"))  # launch number -> job ID
    launches = shared.launches
    # 0 ran, 75 timed out waiting, 125 lost its lease or the server, or killed by chaos.
    codes = {x.n: x.code for x in launches}
    assert set(codes.values()) <= {0, 75, 125, -9, 137}, (seed, sorted(set(codes.values())))
    foreign = [(x.n, line) for x in launches for line in x.err.splitlines()]
    foreign = [(n, line) for n, line in foreign if not line.startswith("singlerun: ")]
    tracebacks = sum("Traceback" in x.err for x in launches)
    kind = server.kind
    direct = {**env, "SINGLERUN_BACKEND": server.url(ns)}  # the proxy is closed
    # A Redis restart loses the history with the rest: only launches started after the
    # last one have all their rows.
    wiped = shared.restarts[-1] if shared.restarts and kind == "redis" else 0.0
    kept = [x for x in launches if x.started > wiped]
    rows_checked, rows_missing, guessed, wrong = _check_history(direct, kept, jobs, seed)
    survived = [x for x in launches if x.waited_through and x.code == 0]
    FIGURES[f"{kind} chaos: launches"] += runs
    FIGURES[f"{kind} chaos: jobs that ran"] += len(tokens)
    FIGURES[f"{kind} chaos: overlaps"] += len(violations)
    for action, n in counts.items():
        FIGURES[f"{kind} chaos: fault {action}"] += n
    FIGURES[f"{kind} chaos: waiters through a fault of the server or network, then ran"] += len(
        survived
    )
    FIGURES[f"{kind} chaos: tracebacks"] += tracebacks
    FIGURES[f"{kind} chaos: stderr lines not from singlerun"] += len(foreign)
    FIGURES[f"{kind} chaos: history rows checked against their launch"] += rows_checked
    FIGURES[f"{kind} chaos: rows gone with the server's data (Redis restart)"] += len(
        launches
    ) - len(kept)
    FIGURES[f"{kind} chaos: launches that ran to 0 or 125 without a row"] += rows_missing
    FIGURES[f"{kind} chaos: rows a reclaimer guessed (the run's own write failed)"] += guessed
    FIGURES[f"{kind} chaos: history rows at odds with their launch"] += len(wrong)
    assert not violations, (seed, violations)
    assert tokens, seed
    assert all(a < b for a, b in itertools.pairwise(tokens)), (seed, tokens)
    assert not tracebacks and not foreign, (seed, foreign[:5])
    assert not wrong, (seed, wrong[:5])


def _check_history(env, launches, jobs, seed):
    """Every row names a job that ran, with the outcome its launch's exit says: 0 is `ok`,
    125 after the job started is `lost` (its lease or its server), or a reclaimer's guess
    (`lost`, end unknown) where the run's own row could not be written (it warned).
    Returns (rows checked, launches that ended 0 or 125 after their job ran and left no
    row, rows that are a reclaimer's guess, what is at odds)."""
    r = subprocess.run(
        [*SINGLERUN, "history", "--json", "-n", "chaos", "--limit", "10000000"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {row["job_id"]: row for row in json.loads(r.stdout)}
    ran = set(jobs.values())
    # A job may be killed (its lease lost) before it logs: never a success, though.
    unlogged = [rows[j] for j in set(rows) - ran]
    wrong = [("an unlogged job ran ok", r) for r in unlogged if r["outcome"] == "ok"]
    checked = missing = guessed = 0
    for x in launches:
        job = jobs.get(str(x.n))
        expected = {0: ("ok", 0), 125: ("lost", None)}.get(x.code)
        if job is None or expected is None:
            continue
        row = rows.get(job)
        if row is None:  # its write failed (the server paused, cut off): it said so
            if "warning: " not in x.err:
                wrong.append(("no row and no warning", x.n, x.code))
            missing += 1
            continue
        checked += 1
        outcome, status = expected
        if row["outcome"] == "lost" and row["ended_at"] is None:
            # The reclaimer's guess stands only if the run's own row could not be written.
            if "warning: " not in x.err:
                wrong.append(("a guess, and no warning", x.n, x.code, row))
            guessed += 1
            continue
        if row["outcome"] != outcome or status not in (None, row["exit_status"]):
            wrong.append(("outcome", x.n, x.code, row, x.err))
    return checked, missing, guessed, wrong


def _lines(path):
    return path.read_text().split("\n")[:-1] if path.exists() else []


def _cmd(p):
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _safe(p):
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
