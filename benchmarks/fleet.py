"""What a fleet costs its server: running jobs and waiters, measured with real ones (issue 19
"Scale, measured"; issue 21's PostgreSQL CPU goal).

For each network store, N real holders (`singlerun -n fleet-I -- sleep`, a key each), then
one holder and N real waiters queued on its key. Once they have settled, over a window of
W seconds, it counts what the server did, minus what it does with nobody there:
- requests: what clients sent (Redis: script calls, which are every exchange singlerun has
  but pub/sub; PostgreSQL: transactions, each autocommit statement being one);
- commands (Redis): INFO commandstats, counting those run inside scripts too;
- server CPU, as a percentage of one core (every process of the server);
- connections (PostgreSQL: sessions named singlerun in pg_stat_activity).
Per job is the total over N; "at 1,000" multiplies it out, which the N = 100 (or more)
rows check against the smaller N: a per-job cost that stays flat extrapolates.
Usage: fleet.py [N ...] [--window SECONDS] [--redis | --postgres] [--quick]
       (default N: 10 100; window 10 s; both stores)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.servers import PostgresServer, RedisServer

BIN = Path(sys.executable).with_name("singlerun")


class Meter:
    """A server's counters, read before and after a window."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def procs(self) -> list[psutil.Process]:
        if self.server.kind == "redis":
            return [psutil.Process(self.server.proc.pid)]
        pm = self.server.postmaster()
        return [pm, *pm.children()]

    def read(self) -> dict[str, float]:
        cpu = 0.0
        for p in self.procs():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu += t.user + t.system
        if self.server.kind == "redis":
            info = self.server.client().info("all")
            calls = {k: v["calls"] for k, v in info.items() if k.startswith("cmdstat_")}
            commands = sum(calls.values())  # those run inside scripts too
            # What clients send: singlerun's every exchange but pub/sub is a script call.
            requests = sum(calls.get(f"cmdstat_{c}", 0) for c in ("evalsha", "eval"))
            connections = info["connected_clients"]
        else:
            (row,) = self.server.sql(
                "SELECT xact_commit + xact_rollback, (SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'singlerun') FROM pg_stat_database "
                "WHERE datname = 'postgres'"
            )
            requests, connections, commands = row[0], row[1], float("nan")
        return {
            "cpu": cpu,
            "requests": requests,
            "commands": commands,
            "connections": connections,
        }

    def window(self, seconds: float) -> dict[str, float]:
        """Rates over `seconds`: requests/s, commands/s, CPU % of one core; connections at
        the end."""
        a = self.read()
        t0 = time.monotonic()
        time.sleep(seconds)
        b = self.read()
        dt = time.monotonic() - t0
        return {
            "requests": (b["requests"] - a["requests"]) / dt,
            "commands": (b["commands"] - a["commands"]) / dt,
            "cpu": 100 * (b["cpu"] - a["cpu"]) / dt,
            "connections": b["connections"],
        }


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _running(procs: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """Until every holder's job has started."""
    for p in procs:
        while not any(c.name() == "sleep" for c in psutil.Process(p.pid).children()):
            assert time.monotonic() < deadline, "a holder did not start its job"
            assert p.poll() is None, f"a holder exited {p.returncode}"
            time.sleep(0.02)


def _end(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)


# Seconds after the last start-up before a window (--quick: less). PostgreSQL counts a
# session's transactions when it next idles a while (up to 10 s later): start-ups' would
# otherwise land in the window.
SETTLE = 12.0


def holders(env: dict[str, str], n: int, meter: Meter, window: float) -> dict[str, float]:
    procs = [_spawn([str(BIN), "-n", f"fleet-{i}", "--", "sleep", "900"], env) for i in range(n)]
    try:
        _running(procs, time.monotonic() + 60 + n)
        time.sleep(SETTLE)  # every start-up's traffic is over
        return meter.window(window)
    finally:
        _end(procs)


def waiters(env: dict[str, str], n: int, meter: Meter, window: float) -> dict[str, float]:
    holder = _spawn([str(BIN), "-n", "queue", "--", "sleep", "900"], env)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _running([holder], time.monotonic() + 60)
        argv = [str(BIN), "-n", "queue", "--wait", "--", "true"]
        procs = [_spawn(argv, env) for _ in range(n)]
        time.sleep(SETTLE + n / 20)  # every waiter queued (each start-up ~0.2 s of CPU)
        assert all(p.poll() is None for p in procs), "a waiter did not wait"
        with_holder = meter.window(window)
        return with_holder
    finally:
        _end([*procs, holder])


def main() -> None:
    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    window = 10.0
    if "--window" in args:
        i = args.index("--window")
        window = float(args[i + 1])
        del args[i : i + 2]
    global SETTLE
    kinds = ["redis", "postgres"]
    for kind in list(kinds):
        if f"--{kind}" in args:  # only that store
            args.remove(f"--{kind}")
            kinds = [kind]
    sizes = [int(a) for a in args] or ([2] if quick else [10, 100])
    window, SETTLE = (0.5, 0.5) if quick else (window, SETTLE)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    print(f"Server cost of real singlerun runs, over {window:g} s windows; per job = (total -")
    print("idle) / N, 'at 1,000' = per job x 1,000. TTL 30 s: a Redis holder renews every")
    print("second, a PostgreSQL holder every 10 s (it hears of stops by notification).\n")
    print(
        "| store | what | N | requests/s | per job | at 1,000 | commands/s | per job "
        "| server CPU % | per job | at 1,000 | connections |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in kinds:
        # PostgreSQL runs as its own user: its directory must be reachable by it.
        work = Path(tempfile.mkdtemp(prefix=f"singlerun-fleet-{kind}-"))
        server = RedisServer(work) if kind == "redis" else PostgresServer(work)
        try:
            env = {**base, "SINGLERUN_LOCK_DIR": str(work / "locks")}
            env["SINGLERUN_BACKEND"] = server.url("fleet")
            meter = Meter(server)
            subprocess.run([str(BIN), "-n", "warm", "--", "true"], env=env, check=True)
            idle = meter.window(window)
            for what, measure in (("holders", holders), ("waiters", waiters)):
                for n in sizes:
                    m = measure(env, n, meter, window)
                    req = m["requests"] - idle["requests"]
                    cmd = m["commands"] - idle["commands"]
                    cpu = m["cpu"] - idle["cpu"]
                    cmds = "- | -" if kind == "postgres" else f"{cmd:.0f} | {cmd / n:.2f}"
                    print(
                        f"| {kind} | {what} | {n} | {req:.0f} | {req / n:.2f} | "
                        f"{1000 * req / n:.0f} | {cmds} | "
                        f"{cpu:.1f} | {cpu / n:.3f} | {1000 * cpu / n:.0f} | "
                        f"{m['connections']:.0f} |"
                    )
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
