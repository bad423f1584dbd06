"""A queue of waiters drained, on each store in one run (issue 21: a network store within
1.5x the lock directory's time).

A holder keeps the key while N waiters (`singlerun -n q --wait -- true`) start and queue;
once all are queued the holder ends, and the clock runs until the last waiter is done.
The stores take turns (lock directory, Redis, PostgreSQL, again), so that a loaded machine
weighs on all alike; the table gives the median. A redis-server and a PostgreSQL cluster
of its own run on free loopback ports.
Usage: drain.py [N] [ROUNDS] [--quick]   (default 100 waiters, 2 rounds; --quick: 5, 1)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.stores import print_ratios, three_stores

BIN = Path(sys.executable).with_name("singlerun")


def _waiting(procs: list[subprocess.Popen[bytes]]) -> bool:
    """Every waiter is past its start-up: asleep in the queue (no CPU for a moment)."""
    try:
        return all(psutil.Process(p.pid).cpu_percent(interval=None) == 0.0 for p in procs)
    except psutil.Error:
        return False


def drain(env: dict[str, str], n: int, key: str) -> float:
    release = Path(env["SINGLERUN_LOCK_DIR"]) / f"release-{key}"
    holder = subprocess.Popen(
        [str(BIN), "-n", key, "--", "sh", "-c", f'while [ ! -e "{release}" ]; do sleep 0.01; done'],
        env=env,
    )
    time.sleep(1.0)  # the holder holds
    argv = [str(BIN), "-n", key, "--wait", "--", "true"]
    waiters = [subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) for _ in range(n)]
    time.sleep(2 + n / 10)  # every start-up over (each ~0.1-0.3 s of CPU on 2 cores)
    while not _waiting(waiters):
        time.sleep(0.5)
    t0 = time.perf_counter()
    release.touch()
    assert holder.wait(60) == 0
    codes = [w.wait(600) for w in waiters]
    took = time.perf_counter() - t0
    assert codes == [0] * n, codes
    return took


def main() -> None:
    quick = "--quick" in sys.argv
    args = [int(a) for a in sys.argv[1:] if a != "--quick"]
    n = 5 if quick else args[0] if args else 100
    rounds = 1 if quick else args[1] if len(args) > 1 else 2
    with three_stores("dr") as envs:
        times: dict[str, list[float]] = {name: [] for name in envs}
        for r in range(rounds):
            for name, env in envs.items():
                times[name].append(drain(env, n, f"q{r}"))
        heading = (
            f"{n} queued waiters drained (holder's end to the last waiter's), median of "
            f"{rounds} interleaved rounds"
        )
        print_ratios(heading, times, "per waiter", n)


if __name__ == "__main__":
    main()
