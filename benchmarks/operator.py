"""Queue and inspection figures (issue 3), each printed as a table.

1. Handoff latency: from the holder job's last act to the next waiter's job start, against
   flock(1) in the same run, interleaved round by round.
2. CPU used by a waiter during a long wait.
3. 100 launchers started at once on one key: time until all have decided, and overlaps.
4. `status` and `status --json` over 10,000 keys.
Usage: operator.py [ROUNDS]   (run with the venv that has singlerun installed)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from singlerun.history import Ledger, Run
from singlerun.keys import JobKey

BIN = Path(sys.executable).with_name("singlerun")
OVERLAP_JOB = [sys.executable, str(Path(__file__).parents[1] / "tests/helpers/overlap_job.py")]
STAMP = "date +%s%N > {}"


def _ns(path: Path) -> int:
    return int(path.read_text())


def handoff(tmp: Path, rounds: int) -> dict[str, list[float]]:
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / "locks")}
    tools = {
        "singlerun --wait": lambda cmd: [BIN, "-n", "h", "--wait", "--", "sh", "-c", cmd],
        "flock(1)": lambda cmd: ["flock", str(tmp / "flock.lock"), "sh", "-c", cmd],
    }
    out: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(rounds):
        for name, argv in tools.items():
            a, b = tmp / "a", tmp / "b"
            holder = subprocess.Popen(argv(f"sleep 0.6; {STAMP.format(a)}"), env=env)
            time.sleep(0.3)  # let the holder take the lock, then queue the waiter behind it
            waiter = subprocess.Popen(argv(STAMP.format(b)), env=env)
            assert holder.wait() == 0 and waiter.wait() == 0
            out[name].append((_ns(b) - _ns(a)) / 1e6)
    return out


def waiter_cpu(tmp: Path, seconds: float) -> float:
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / "locks")}
    holder = subprocess.Popen([BIN, "-n", "w", "--", "sleep", str(seconds)], env=env)
    time.sleep(0.5)
    waiter = subprocess.Popen([BIN, "-n", "w", "--wait", "--", "true"], env=env)
    proc = psutil.Process(waiter.pid)
    time.sleep(0.5)  # past its start-up: from here on it only waits
    before = proc.cpu_times()
    time.sleep(seconds - 1.5)
    after = proc.cpu_times()
    assert holder.wait() == 0 and waiter.wait() == 0
    return (after.user + after.system) - (before.user + before.system)


def stampede(tmp: Path, n: int) -> tuple[float, int, int, int]:
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / "locks")}
    box = tmp / "box"
    box.mkdir()
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [BIN, "-n", "hot", "--", *OVERLAP_JOB, str(box), "0.05"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    codes = [p.wait() for p in procs]
    took = time.perf_counter() - t0
    overlaps = len((box / "violations").read_text().split()) if (box / "violations").exists() else 0
    return took, codes.count(0), codes.count(75), overlaps


def status_over(tmp: Path, keys: int) -> dict[str, float]:
    locks = tmp / "many"
    locks.mkdir(mode=0o700)
    runs = []
    for i in range(keys):
        key = JobKey(f"g{i % 100}", f"job{i}")
        (locks / f"{key.stem}.lock").touch()
        runs.append(
            Run(
                f"ID{i:024d}",
                key.group,
                key.name,
                "h",
                1,
                1e9 + i,
                1e9 + i + 5,
                0,
                "ok",
                '["true"]',
            )
        )
    Ledger(str(locks)).add(*runs)
    out = {}
    for label, extra in (("status", []), ("status --json", ["--json"])):
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = subprocess.run(
                [BIN, "status", "--lock-dir", str(locks), *extra],
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(time.perf_counter() - t0)
        assert r.stdout.count("idle") == keys
        out[label] = statistics.median(samples)
    return out


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"{os.cpu_count()} CPUs, {rounds} rounds\n")
    with tempfile.TemporaryDirectory() as tmp:
        lat = handoff(Path(tmp), rounds)
    print("Handoff latency, holder's last act to the next waiter's first (ms)\n")
    print("| tool | p50 | p99 | max | goal |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, samples in lat.items():
        q = statistics.quantiles(samples, n=100, method="inclusive")
        goal = "p50 ≤ 10, p99 ≤ 30" if name.startswith("singlerun") else ""
        print(f"| {name} | {q[49]:.1f} | {q[98]:.1f} | {max(samples):.1f} | {goal} |")
    with tempfile.TemporaryDirectory() as tmp:
        cpu = waiter_cpu(Path(tmp), 10)
    print("\n| waiter CPU during 8.5 s of a 10 s wait | goal |\n| ---: | --- |")
    print(f"| {cpu:.3f} s | ≤ 0.1 s |")
    with tempfile.TemporaryDirectory() as tmp:
        took, ran, refused, overlaps = stampede(Path(tmp), 100)
    print("\n| 100 launchers at once | value | goal |\n| --- | ---: | --- |")
    print(f"| time until all decided | {took:.2f} s | ≤ 3 s |")
    print(f"| ran / refused (75) | {ran} / {refused} | |")
    print(f"| overlaps | {overlaps} | 0 |")
    with tempfile.TemporaryDirectory() as tmp:
        st = status_over(Path(tmp), 10_000)
    print("\n| over 10,000 keys | median of 3 | goal |\n| --- | ---: | --- |")
    for label, secs in st.items():
        print(f"| `singlerun {label}` | {secs:.2f} s | ≤ 1 s |")


if __name__ == "__main__":
    main()
