"""What monitoring costs: `check` and `metrics` over many keys with a long history.

The lock directory: 10,000 keys with 100 runs each (a million ledger rows; goal: each under
one second). The network stores, whose history is a bounded stream or table that singlerun
reads whole and counts itself: 1,000 keys with 10 runs each, on a redis-server and a
PostgreSQL cluster of their own (the test suite's servers, testbed/servers.py).
Beside them, `python3 -c pass` and `flock -n f true`, measured in the same run.
Usage: monitoring.py [--quick]   (--quick: 200 keys with 5 runs, as the test suite runs it)
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

from singlerun.history import Run
from singlerun.keys import JobKey, KeyFilter
from singlerun.store import open_store
from singlerun.store.files.ledger import Ledger
from singlerun.store.files.lockdir import LockDir

BIN = Path(sys.executable).with_name("singlerun")
COMMANDS = {
    "check": ["check", "--max-age", "26h", "--warn-age", "25h"],
    "metrics": ["metrics"],
}


def _runs(keys: int, per_key: int) -> list[Run]:
    now = time.time()
    out = []
    for i in range(keys):
        for j in range(per_key):
            started = now - (per_key - j) * 3600.0
            outcome = "failed" if j % 10 == 9 else "ok"
            out.append(
                Run(
                    f"K{i:06d}R{j:04d}",
                    f"g{i % 100}",
                    f"job{i}",
                    "h",
                    4242,
                    started,
                    started + 30,
                    int(outcome != "ok"),
                    outcome,
                    '["true"]',
                )
            )
    return out


def _time(argv: list[str], env: dict[str, str], rounds: int) -> tuple[float, int]:
    samples, code = [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env, capture_output=True, text=True)
        samples.append(time.perf_counter() - t0)
        code = r.returncode
        assert code in (0, 1, 2), r.stderr
    return statistics.median(samples), code


def _baselines(tmp: Path, rounds: int) -> dict[str, float]:
    argvs = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "flock -n f true": ["flock", "-n", str(tmp / "f"), "true"],
    }
    return {name: _time(argv, dict(os.environ), rounds)[0] for name, argv in argvs.items()}


def main() -> None:
    quick = "--quick" in sys.argv
    file_keys, file_runs = (200, 5) if quick else (10_000, 100)
    net_keys, net_runs = (50, 2) if quick else (1_000, 10)
    rounds = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="singlerun-monitoring-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    rows = []
    try:
        locks = tmp / "locks"
        locks.mkdir(mode=0o700)
        for i in range(file_keys):  # each key's lock file, as its runs leave them
            (locks / f"{JobKey(f'g{i % 100}', f'job{i}').stem}.lock").touch()
        runs = _runs(file_keys, file_runs)
        Ledger(LockDir(str(locks))).add(*runs, deadline=time.monotonic() + 600)
        env = {**base, "SINGLERUN_LOCK_DIR": str(locks)}
        for name, args in COMMANDS.items():
            took, code = _time([str(BIN), *args], env, rounds)
            rows.append((f"`{name}`", "lock directory", file_keys, file_runs, took, code))
        servers = _servers(tmp)
        try:
            for kind, url in servers.items():
                store = open_store(None, url)
                batch = _runs(net_keys, net_runs)
                for start in range(0, len(batch), 500):
                    store.add_runs(*batch[start : start + 500], keep=net_keys * net_runs)
                assert len(store.key_stats(KeyFilter())) == net_keys
                store.close()
                env = {**base, "SINGLERUN_BACKEND": url}
                for name, args in COMMANDS.items():
                    took, code = _time([str(BIN), *args], env, rounds)
                    rows.append((f"`{name}`", kind, net_keys, net_runs, took, code))
        finally:
            _stop_servers()
        floors = _baselines(tmp, max(rounds, 5))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{rounds} round(s) each, median, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print()
    print("| command | store | keys | runs per key | seconds | × python3 -c pass | exit |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for command, store_name, keys, per_key, took, code in rows:
        ratio = took / floors["python3 -c pass"]
        cells = (command, store_name, f"{keys:,}", per_key, f"{took:.3f}", f"{ratio:.0f}", code)
        print("| " + " | ".join(map(str, cells)) + " |")
    print()
    for name, took in floors.items():
        print(f"baseline `{name}`: {took * 1000:.1f} ms")


_RUNNING: list[object] = []


def _servers(tmp: Path) -> dict[str, str]:
    """A redis-server and a PostgreSQL cluster of their own, if this machine has them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed: real servers
    from testbed.servers import INITDB, PG_CTL, REDIS_SERVER, PostgresServer, RedisServer

    urls = {}
    if REDIS_SERVER is not None:
        (tmp / "redis").mkdir()
        redis = RedisServer(tmp / "redis")
        _RUNNING.append(redis)
        urls["Redis"] = redis.url("bench")
    if PG_CTL is not None and INITDB is not None:
        pg_dir = Path(tempfile.mkdtemp(prefix="singlerun-bench-pg-"))
        postgres = PostgresServer(pg_dir)
        _RUNNING.append((postgres, pg_dir))
        urls["PostgreSQL"] = postgres.url("bench")
    return urls


def _stop_servers() -> None:
    for item in _RUNNING:
        server, *where = item if isinstance(item, tuple) else (item,)
        server.stop()  # type: ignore[attr-defined]
        for path in where:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
