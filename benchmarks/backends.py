"""The file store beside the Redis and PostgreSQL stores, measured in one run on one machine.

1. Start-up of `singlerun -n x -- true` (interleaved rounds, beside `python3 -c pass` and
   `flock -n f true`); goal: a network store ≤ file + 25 ms.
2. Handoff through --wait: holder's last act to the waiter's job start (p50, p99).
3. Supervisor CPU over a long job, renewals included (goal ≤ 0.05 s over 60 s).
4. Waiter CPU over a long wait (goal ≤ 0.1 s over 30 s).
5. 50 launchers at once on one key: time until all are decided.
A redis-server and a PostgreSQL cluster of its own run on free loopback ports (the test
suite's servers, testbed/servers.py).
Usage: backends.py [ROUNDS] [--quick]   (--quick: small and short, as the test suite runs it)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).with_name("singlerun")
STAMP = "date +%s%N > {}"


def _envs(tmp: Path, urls: dict[str, str]) -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    base["SINGLERUN_LOCK_DIR"] = str(tmp / "locks")
    return {"file": base, **{k: {**base, "SINGLERUN_BACKEND": u} for k, u in urls.items()}}


def baselines(rounds: int, tmp: Path) -> dict[str, float]:
    """Median ms of `python3 -c pass` and `flock -n f true`, for ratios."""
    out: dict[str, list[float]] = {"python3 -c pass": [], "flock": []}
    argvs = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "flock": ["flock", "-n", str(tmp / "f"), "true"],
    }
    for _ in range(rounds):
        for name, argv in argvs.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True)
            out[name].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in out.items()}


def startup(envs: dict[str, dict[str, str]], rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(rounds):
        for name, env in envs.items():
            t0 = time.perf_counter()
            subprocess.run([BIN, "-n", "x", "--", "true"], env=env, check=True)
            out[name].append((time.perf_counter() - t0) * 1000)
    return out


def handoff(env: dict[str, str], tmp: Path, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        a, b = tmp / f"a{i}", tmp / f"b{i}"
        run = [BIN, "-n", "h", "--wait", "--", "sh", "-c"]
        holder = subprocess.Popen([*run, f"sleep 0.6; {STAMP.format(a)}"], env=env)
        time.sleep(0.3)
        waiter = subprocess.Popen([*run, STAMP.format(b)], env=env)
        assert holder.wait() == 0 and waiter.wait() == 0
        out.append((int(b.read_text()) - int(a.read_text())) / 1e6)
    return out


def supervisor_cpu(env: dict[str, str], seconds: float) -> float:
    proc = subprocess.Popen([BIN, "-n", "cpu", "--", "sleep", str(seconds)], env=env)
    p = psutil.Process(proc.pid)
    while not any(c.name() == "sleep" for c in p.children()):
        time.sleep(0.005)
    before = p.cpu_times()
    time.sleep(seconds - 0.3)
    after = p.cpu_times()
    assert proc.wait() == 0
    return (after.user + after.system) - (before.user + before.system)


def waiter_cpu(env: dict[str, str], seconds: float) -> float:
    holder = subprocess.Popen([BIN, "-n", "wcpu", "--", "sleep", str(seconds + 1)], env=env)
    time.sleep(0.5)
    waiter = subprocess.Popen([BIN, "-n", "wcpu", "--wait", "--", "true"], env=env)
    p = psutil.Process(waiter.pid)
    time.sleep(0.5)  # past its start-up
    before = p.cpu_times()
    time.sleep(seconds - 0.5)
    after = p.cpu_times()
    assert holder.wait() == 0 and waiter.wait() == 0
    return (after.user + after.system) - (before.user + before.system)


def launchers(env: dict[str, str], n: int) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    argv = [BIN, "-n", "storm", "--", "sleep", "0.05"]
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) for _ in range(n)]
    codes = [p.wait() for p in procs]
    return time.perf_counter() - t0, codes.count(0), codes.count(75)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed: real servers
    from testbed.servers import PostgresServer, RedisServer

    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    rounds = 2 if quick else int(args[0]) if args else 30
    job_s, wait_s, storm_n = (0.5, 0.5, 10) if quick else (60.0, 30.0, 50)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg_dir = Path(tempfile.mkdtemp(prefix="singlerun-bench-pg-"))
        redis, pg = RedisServer(tmp), PostgresServer(pg_dir)
        try:
            envs = _envs(tmp, {"redis": redis.url("bench"), "postgres": pg.url("bench")})
            base = baselines(rounds, tmp)
            starts = startup(envs, rounds)
            res = {}
            for name, env in envs.items():
                res[name] = (
                    handoff(env, tmp, rounds),
                    supervisor_cpu(env, job_s),
                    waiter_cpu(env, wait_s),
                    launchers(env, storm_n),
                )
        finally:
            redis.stop()
            pg.stop()
            shutil.rmtree(pg_dir, ignore_errors=True)
    names = list(envs)
    med = {k: statistics.median(v) for k, v in starts.items()}
    print(f"{rounds} rounds, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print(f"baselines, median ms: python3 -c pass {base['python3 -c pass']:.1f}, ", end="")
    print(f"flock -n f true {base['flock']:.1f}\n")
    print("| measure | file store | Redis store | PostgreSQL store | goal (network) |")
    print("| --- | ---: | ---: | ---: | --- |")

    def row(label: str, cells: list[str], goal: str) -> None:
        print(f"| {label} | {' | '.join(cells)} | {goal} |")

    row("start-up `-- true`, median ms", [f"{med[n]:.1f}" for n in names], "≤ file + 25")
    row("… minus the file store", [f"{med[n] - med['file']:+.1f}" for n in names], "≤ +25")
    row("… × python3 -c pass", [f"{med[n] / base['python3 -c pass']:.1f}" for n in names], "")
    row("… × flock", [f"{med[n] / base['flock']:.0f}" for n in names], "")
    q = {k: statistics.quantiles(v[0], n=100, method="inclusive") for k, v in res.items()}
    row("handoff p50 ms", [f"{q[n][49]:.1f}" for n in names], "≤ 15")
    row("handoff p99 ms", [f"{q[n][98]:.1f}" for n in names], "≤ 50")
    row(
        f"supervisor CPU over a {job_s:g} s job",
        [f"{res[n][1]:.3f} s" for n in names],
        "≤ 0.05 s (60 s)",
    )
    row(
        f"waiter CPU over a {wait_s:g} s wait",
        [f"{res[n][2]:.3f} s" for n in names],
        "≤ 0.1 s (30 s)",
    )
    row(
        f"{storm_n} launchers: all decided", [f"{res[n][3][0]:.2f} s" for n in names], "all decided"
    )
    row("… ran / refused (75)", [f"{res[n][3][1]} / {res[n][3][2]}" for n in names], "")


if __name__ == "__main__":
    main()
