"""What a network handoff must pay that a lock-directory handoff does not (issue 21: why the
Redis drain stays above 1.5x the lock directory's time).

Measured from a process the size of a network waiter (singlerun, its CLI and redis-py
loaded): starting the job as the lock directory does (`posix_spawn`), as a network lease
must (a forked child held at a gate until the watchdog is armed: issue 23), the same child
forked ahead as a network `--wait` run does (standby.py: only its release is timed), and
as a gate that is a shell would; the watchdog's fork; and one script call's round trip to a
redis-server of its own on a loopback port (a Redis handoff makes three: the wake-up,
ACQUIRE, which also names the job, RELEASE).
The shell gate is not used, cheaper as it is: dash drops environment entries whose names
are not shell identifiers (`a-b=1`), runs a file without `#!` as a script where a
lock-directory run exits 126, and bash as /bin/sh adds `_` to the job's environment.
Usage: handoff_floor.py [N] [--quick]   (median of N, default 200; --quick: 20)
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

import singlerun.cli
import singlerun.runner
import singlerun.store.redis.store
import singlerun.ticker  # noqa: F401  # a waiter has all of these loaded
from singlerun.spawn import Gated, dispositions
from testbed.servers import RedisServer

_children: list[int] = []


def _median_ms(f: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def posix_spawn_true() -> None:
    os.waitpid(os.posix_spawnp("true", ["true"], os.environ, setpgroup=0), 0)


def forked_gate_true() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        os.close(w)
        os.read(r, 1)
        os.execvpe("true", ["true"], os.environ)
    os.close(r)
    os.write(w, b"G")
    os.close(w)
    os.waitpid(pid, 0)


def released_true(n: int) -> float:
    """The job forked ahead and held at its gate (spawn.Gated, as standby.py forks it while
    a network waiter waits): from its release to its end, the fork not counted."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    times = []
    for _ in range(n):
        job = Gated(["true"], dict(os.environ), mask, dispositions())
        time.sleep(0.002)  # it waits at its gate
        t = time.perf_counter()
        os.waitpid(job.release({}, None), 0)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def shell_gate_true() -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)
    gate = f'read _ <&{r} || exit 125; exec {r}<&-; exec "$@"'
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", gate, "sh", "true"], os.environ, setpgroup=0)
    os.close(r)
    os.write(w, b"G\n")
    os.close(w)
    os.waitpid(pid, 0)


def fork_parent_side() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _children.append(pid)


def fork_exit_reap() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def main() -> None:
    quick = "--quick" in sys.argv
    args = [int(a) for a in sys.argv[1:] if a != "--quick"]
    n = 20 if quick else args[0] if args else 200
    rows = [
        ("the job by `posix_spawn` + wait (`true`; the lock directory)", posix_spawn_true),
        ("the job forked, held at a gate, exec + wait (a network lease)", forked_gate_true),
        ("the job behind a `/bin/sh` gate, by `posix_spawn` (not used)", shell_gate_true),
        ("the watchdog's fork, the parent's side", fork_parent_side),
        ("a fork's whole life: fork, exit, reap", fork_exit_reap),
    ]
    figures = [(what, _median_ms(f, n)) for what, f in rows]
    figures.insert(2, ("the same, forked ahead: its release, exec + wait (a network `--wait` run)",
                       released_true(n)))  # fmt: skip
    for pid in _children:
        os.waitpid(pid, 0)
    work = Path(tempfile.mkdtemp(prefix="singlerun-floor-"))
    server = RedisServer(work)
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port, protocol=2)
        sha = client.script_load("return redis.call('GET', KEYS[1])")
        rtt = _median_ms(lambda: client.evalsha(sha, 1, "k"), n)
        client.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures.append(("one script call's round trip (EVALSHA, redis-py)", rtt))
    print(f"Median of {n}, from a process the size of a network waiter\n")
    print("| what | ms |")
    print("| --- | ---: |")
    for what, ms in figures:
        print(f"| {what} | {ms:.2f} |")


if __name__ == "__main__":
    main()
