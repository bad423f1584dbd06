"""`singlerun status --all` over many keys on each store, in one run (issue 21: each network
store within 1.5x the lock directory's time).

Every key has one finished run in its history and nothing held, as on a long-lived fleet
whose keys are mostly idle; 1 key in 100 also has a running holder (a real singlerun).
The histories are written through the stores' own interface (`add_runs`), the lock
directory also gets a lock file per key, as its runs leave. Interleaved rounds, median.
A redis-server and a PostgreSQL cluster of its own run on free loopback ports.
Usage: status_keys.py [KEYS] [--quick]   (default 10,000; --quick: 200 keys, 1 round)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singlerun.history import Run
from singlerun.keys import JobKey
from singlerun.store import open_store
from testbed.stores import print_ratios, three_stores

BIN = Path(sys.executable).with_name("singlerun")


def _runs(keys: int) -> list[Run]:
    at = time.time() - 3600
    runs = []
    for i in range(keys):
        started = at + i / 1000
        run = Run(f"ID{i:024d}", f"g{i % 100}", f"job{i}", "h", 1, started, started + 5, 0, "ok",
                  '["true"]')  # fmt: skip
        runs.append(run)
    return runs


def _fill(env: dict[str, str], keys: int) -> list[subprocess.Popen[bytes]]:
    """The histories, and a holder on every hundredth key."""
    runs = _runs(keys)
    backend = env.get("SINGLERUN_BACKEND")
    with open_store(env["SINGLERUN_LOCK_DIR"], backend) as store:
        for start in range(0, keys, 500):
            store.add_runs(*runs[start : start + 500], keep=max(keys, 100))
    if backend is None:  # as the runs would have left them
        for run in runs:
            (Path(env["SINGLERUN_LOCK_DIR"]) / f"{JobKey(run.group, run.name).stem}.lock").touch()
    holders = []
    for i in range(0, keys, 100):
        argv = [str(BIN), "-g", f"g{i % 100}", "-n", f"job{i}", "--", "sleep", "600"]
        holders.append(subprocess.Popen(argv, env=env))
    deadline = time.monotonic() + 120
    for p in holders:
        import psutil

        while not any(c.name() == "sleep" for c in psutil.Process(p.pid).children()):
            assert time.monotonic() < deadline and p.poll() is None, "a holder did not start"
            time.sleep(0.02)
    return holders


def main() -> None:
    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    keys = 200 if quick else int(args[0]) if args else 10_000
    rounds = 1 if quick else 5
    holders: list[subprocess.Popen[bytes]] = []
    with three_stores("st") as envs:
        try:
            for env in envs.values():
                holders += _fill(env, keys)
            times: dict[str, list[float]] = {name: [] for name in envs}
            for _ in range(rounds):
                for name, env in envs.items():
                    t0 = time.perf_counter()
                    r = subprocess.run([str(BIN), "status", "--all"], env=env, capture_output=True,
                                       text=True, check=True)  # fmt: skip
                    times[name].append(time.perf_counter() - t0)
                    shown = r.stdout.count("  idle") + r.stdout.count("  running")
                    assert shown == keys, (name, shown)
            heading = (
                f"`singlerun status --all` over {keys:,} keys (1 in 100 running), median of "
                f"{rounds} interleaved rounds"
            )
            print_ratios(heading, times)
        finally:
            for p in holders:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
            for p in holders:
                p.wait(30)


if __name__ == "__main__":
    main()
