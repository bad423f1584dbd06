"""A queue of waiters drained, on each store in one run (issue 21: a network store within
1.5x the lock directory's time).

A holder keeps the key while N waiters (`singlerun -n q --wait -- true`) start and queue;
once all are queued the holder ends, and the clock runs until the last waiter is done.
The stores take turns (lock directory, Redis, PostgreSQL, again), so that a loaded machine
weighs on all alike; the table gives the median. A redis-server and a PostgreSQL cluster
of its own run on free loopback ports.
On a machine of a few CPUs, a drain's time follows the CPU that each waiter spends in it:
the second table gives it, the waiters' own (with their watchdogs and jobs, from the
release to their reaping) and the server's.
Usage: drain.py [N] [ROUNDS] [--quick]   (default 100 waiters, 2 rounds; --quick: 5, 1)
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.stores import FILES, print_ratios, three_stores

BIN = Path(sys.executable).with_name("singlerun")


def _waiting(procs: list[subprocess.Popen[bytes]]) -> bool:
    """Every waiter is past its start-up: asleep in the queue (no CPU for a moment)."""
    try:
        return all(psutil.Process(p.pid).cpu_percent(interval=None) == 0.0 for p in procs)
    except psutil.Error:
        return False


def _cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds spent so far by `procs`, with the children they have reaped. Threads'
    run time from schedstat, to the nanosecond: psutil's CPU times count in clock ticks
    (10 ms), longer than a waiter's whole share of a drain."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            t = p.cpu_times()  # reaped children: ticks, but summed over many
            total += t.children_user + t.children_system
            for task in Path(f"/proc/{p.pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
    return total


def _family(procs: list[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    found = []
    for w in procs:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(w.pid)
            found += [p, *p.children(recursive=True)]
    return found


def _reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> float:
    """Wait for `procs` (within `timeout` seconds); the CPU seconds of their whole lives,
    with the children they reaped. wait4 blocks in a thread: it gives each one's usage,
    which Popen.wait does not, and the clock stops as the last one ends, not at a poll."""
    total: list[float] = []

    def reap_all() -> None:
        used = 0.0
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            used += usage.ru_utime + usage.ru_stime
        total.append(used)

    reaper = threading.Thread(target=reap_all, daemon=True)
    reaper.start()
    reaper.join(timeout)
    if not total:
        raise TimeoutError(f"the waiters were not all done within {timeout} s")
    return total[0]


def drain(
    env: dict[str, str], n: int, key: str, server: Callable[[], list[psutil.Process]]
) -> tuple[float, float, float]:
    """(seconds to drain, the waiters' CPU seconds in it, the server's)."""
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
    cpu_before, server_before = _cpu(_family(waiters)), _cpu(server())
    t0 = time.perf_counter()
    release.touch()
    assert holder.wait(60) == 0
    cpu_after = _reap(waiters, 600)
    took = time.perf_counter() - t0
    server_cpu = _cpu(server()) - server_before
    codes = [w.returncode for w in waiters]
    assert codes == [0] * n, codes
    return took, cpu_after - cpu_before, server_cpu


def main() -> None:
    quick = "--quick" in sys.argv
    args = [int(a) for a in sys.argv[1:] if a != "--quick"]
    n = 5 if quick else args[0] if args else 100
    rounds = 1 if quick else args[1] if len(args) > 1 else 2
    servers: dict[str, Callable[[], list[psutil.Process]]] = {}
    with three_stores("dr", servers) as envs:
        times: dict[str, list[float]] = {name: [] for name in envs}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in envs}
        for r in range(rounds):
            for name, env in envs.items():
                took, waiters, server = drain(env, n, f"q{r}", servers.get(name, list))
                times[name].append(took)
                cpu[name].append((waiters, server))
        heading = (
            f"{n} queued waiters drained (holder's end to the last waiter's), median of "
            f"{rounds} interleaved rounds"
        )
        print_ratios(heading, times, "per waiter", n)
        _print_cpu(cpu, n)


def _print_cpu(cpu: dict[str, list[tuple[float, float]]], n: int) -> None:
    print(f"\nCPU per waiter in the drain (ms, median), on {os.cpu_count()} CPUs\n")
    print("| store | waiter, its watchdog and job | server | both | ÷ lock directory |")
    print("| --- | ---: | ---: | ---: | ---: |")
    per_waiter = {
        name: (statistics.median(w for w, _ in samples) * 1000 / n,
               statistics.median(s for _, s in samples) * 1000 / n)
        for name, samples in cpu.items()
    }  # fmt: skip
    files = sum(per_waiter[FILES])
    for name, (own, server) in per_waiter.items():
        print(f"| {name} | {own:.2f} | {server:.2f} | {own + server:.2f} | "
              f"{(own + server) / files:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
