"""The three stores side by side, for the benchmarks that compare them in one run: a lock
directory, and a redis-server and a PostgreSQL cluster of their own on free loopback
ports, each as the environment a singlerun needs to use it."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from testbed.servers import PostgresServer, RedisServer

FILES = "lock directory"


@contextlib.contextmanager
def three_stores(
    tag: str, servers: dict[str, Callable[[], list[psutil.Process]]] | None = None
) -> Iterator[dict[str, dict[str, str]]]:
    """{store's name: environment}, the lock directory first; `tag` names the work
    directory and the network stores' namespace. Everything goes at the end. `servers`,
    if given, gets a call per network store that lists its server's processes (a call:
    PostgreSQL's backends come and go)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    work = Path(tempfile.mkdtemp(prefix=f"singlerun-{tag}-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user
    (work / "redis").mkdir()
    (work / "pg").mkdir()
    redis = RedisServer(work / "redis")
    try:
        pg = PostgresServer(work / "pg")
        try:
            envs = {}
            if servers is not None:
                servers.update(Redis=redis.processes, PostgreSQL=pg.processes)
            for name, url in ((FILES, None), ("Redis", redis.url(tag)),
                              ("PostgreSQL", pg.url(tag))):  # fmt: skip
                env = {**base, "SINGLERUN_LOCK_DIR": str(work / f"locks-{name[0]}")}
                Path(env["SINGLERUN_LOCK_DIR"]).mkdir(mode=0o700)
                if url:
                    env["SINGLERUN_BACKEND"] = url
                envs[name] = env
            yield envs
        finally:
            pg.stop()
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_ratios(heading: str, times: dict[str, list[float]], per: str = "", n: int = 1) -> None:
    """`heading`, then a table of each store's median seconds and its ratio to the lock
    directory's (issue 21's goal: 1.5 at most); with `per`, also milliseconds per one of
    `n` (a column named `per`)."""
    files = statistics.median(times[FILES])
    print(heading + "\n")
    extra = (f" {per} (ms) |", " ---: |") if per else ("", "")
    print(f"| store | seconds |{extra[0]} ÷ lock directory | goal |")
    print(f"| --- | ---: |{extra[1]} ---: | --- |")
    for name, samples in times.items():
        t = statistics.median(samples)
        goal = "" if name == FILES else "≤ 1.5"
        each = f" {1000 * t / n:.0f} |" if per else ""
        print(f"| {name} | {t:.2f} |{each} {t / files:.2f} | {goal} |")
