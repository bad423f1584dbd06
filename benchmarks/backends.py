"""The file store beside the Redis store, measured in one run on one machine.

1. Start-up of `singlerun -n x -- true` (interleaved rounds); goal: Redis ≤ file + 25 ms.
2. Handoff through --wait: holder's last act to the waiter's job start (p50, p99).
3. Supervisor CPU over a long job, renewals included (goal ≤ 0.05 s over 60 s).
4. Waiter CPU over a long wait (goal ≤ 0.1 s over 30 s).
5. 50 launchers at once on one key: time until all are decided.
A redis-server of its own runs on a free loopback port (no persistence).
Usage: backends.py [ROUNDS] [--quick]   (--quick: small and short, as the test suite runs it)
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).with_name("singlerun")
STAMP = "date +%s%N > {}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("benchmarks/backends.py needs redis-server")
    port = _free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _envs(tmp: Path, url: str) -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    return {
        "file": {**base, "SINGLERUN_LOCK_DIR": str(tmp / "locks")},
        "redis": {**base, "SINGLERUN_LOCK_DIR": str(tmp / "locks"), "SINGLERUN_BACKEND": url},
    }


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
    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    rounds = 2 if quick else int(args[0]) if args else 30
    job_s, wait_s, storm_n = (2.0, 2.0, 10) if quick else (60.0, 30.0, 50)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server, url = _redis(tmp)
        try:
            envs = _envs(tmp, url)
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
            server.kill()
            server.wait()
    med = {k: statistics.median(v) for k, v in starts.items()}
    print(f"{rounds} rounds, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| measure | file store | Redis store | goal (Redis) |")
    print("| --- | ---: | ---: | --- |")
    print(f"| start-up `-- true`, median ms | {med['file']:.1f} | {med['redis']:.1f} | ", end="")
    print(f"≤ file + 25 ({med['redis'] - med['file']:+.1f}) |")
    q = {k: statistics.quantiles(v[0], n=100, method="inclusive") for k, v in res.items()}
    print(f"| handoff p50 ms | {q['file'][49]:.1f} | {q['redis'][49]:.1f} | ≤ 15 |")
    print(f"| handoff p99 ms | {q['file'][98]:.1f} | {q['redis'][98]:.1f} | ≤ 50 |")
    print(f"| supervisor CPU over a {job_s:g} s job | {res['file'][1]:.3f} s | ", end="")
    print(f"{res['redis'][1]:.3f} s | ≤ 0.05 s (60 s) |")
    print(f"| waiter CPU over a {wait_s:g} s wait | {res['file'][2]:.3f} s | ", end="")
    print(f"{res['redis'][2]:.3f} s | ≤ 0.1 s (30 s) |")
    f, r = res["file"][3], res["redis"][3]
    print(f"| {storm_n} launchers: all decided | {f[0]:.2f} s | {r[0]:.2f} s | all decided |")
    print(f"| … ran / refused (75) | {f[1]} / {f[2]} | {r[1]} / {r[2]} | |")


if __name__ == "__main__":
    main()
