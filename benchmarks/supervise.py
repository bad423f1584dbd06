"""CPU time and peak RSS of singlerun itself while it supervises a job of SECONDS (default 10).

Supervising CPU is singlerun's own CPU time (psutil) sampled once the job has started and
again just before it ends: the supervising loop must not poll, so it should stay near zero.
Total CPU and peak RSS come from wait4(); the job is `sleep`, which adds next to nothing.
Usage: supervise.py [SECONDS] [--quick]   (--quick: a 0.5 s job, as the test suite runs it)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import psutil


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--quick"]
    seconds = 0.5 if "--quick" in sys.argv else float(args[0]) if args else 10.0
    singlerun = str(Path(sys.executable).with_name("singlerun"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SINGLERUN_LOCK_DIR": tmp}
        argv = [singlerun, "-n", "x", "--", "/bin/sleep", str(seconds)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env)
        proc = psutil.Process(pid)
        while not any(p.name() == "sleep" for p in proc.children()):
            time.sleep(0.005)
        started = proc.cpu_times()
        time.sleep(seconds - 0.5)
        ended = proc.cpu_times()
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
    assert os.waitstatus_to_exitcode(status) == 0
    supervising = (ended.user + ended.system) - (started.user + started.system)
    print(f"singlerun supervising `sleep {seconds:g}` ({os.cpu_count()} CPUs)\n")
    print("| measure | value | goal |")
    print("| --- | ---: | ---: |")
    window = seconds - 0.5
    print(f"| CPU while supervising ({window:g} s of the job) | {supervising:.3f} s | ≤ 0.05 s |")
    print(
        f"| CPU in all (start-up, lock, record, release, job) | "
        f"{usage.ru_utime + usage.ru_stime:.3f} s | |"
    )
    print(f"| peak RSS | {usage.ru_maxrss / 1024:.1f} MiB | |")
    print(f"| wall | {wall:.2f} s | |")


if __name__ == "__main__":
    main()
