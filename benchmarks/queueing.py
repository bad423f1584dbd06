"""Queue and inspection figures, each printed as a table.

1. Handoff latency: from the holder job's last act to the next waiter's job start, against
   flock(1) in the same run, interleaved round by round.
2. CPU used by a waiter during a long wait.
3. `status` and `status --json` over 10,000 keys.
(Launcher storms are in startup.py, beside their CPU floor.)
Usage: queueing.py [ROUNDS] [--quick]   (run with the venv that has singlerun installed;
--quick: one small round of each, as the test suite runs it)
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

from singlerun.history import Run
from singlerun.keys import JobKey
from singlerun.store.files.ledger import Ledger
from singlerun.store.files.lockdir import LockDir

BIN = Path(sys.executable).with_name("singlerun")
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
    """CPU of a waiter from 0.5 s after its launch to 1 s before the holder ends."""
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
    Ledger(LockDir(str(locks))).add(*runs)
    out = {}
    for label, extra in (("status", []), ("status --json", ["--json"])):
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = subprocess.run(
                [BIN, "status", "--all", "--lock-dir", str(locks), *extra],
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(time.perf_counter() - t0)
        assert r.stdout.count("idle") == keys
        out[label] = statistics.median(samples)
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    rounds = 2 if quick else int(args[0]) if args else 20
    wait_s, keys = (2.5, 200) if quick else (10, 10_000)
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
        cpu = waiter_cpu(Path(tmp), wait_s)
    print(f"\n| waiter CPU during {wait_s - 1.5:g} s of a {wait_s:g} s wait | goal |")
    print(f"| ---: | --- |\n| {cpu:.3f} s | ≤ 0.1 s |")
    with tempfile.TemporaryDirectory() as tmp:
        st = status_over(Path(tmp), keys)
    print(f"\n| over {keys:,} keys | median of 3 | goal |\n| --- | ---: | --- |")
    for label, secs in st.items():
        print(f"| `singlerun {label}` | {secs:.2f} s | ≤ 1 s |")


if __name__ == "__main__":
    main()
