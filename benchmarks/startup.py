"""Wall time of `singlerun -n x -- true` against `flock -n f true` and `python3 -c pass`.

The three are interleaved, round by round, in one run so that machine noise hits them alike.
Usage: startup.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    with tempfile.TemporaryDirectory() as tmp:
        # Measure what users get: a regular (not editable) install, with its bytecode, in a
        # fresh virtual environment. `python3 -c pass` runs on that environment's
        # interpreter, so both pay the same interpreter start-up.
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
            check=True,
        )
        singlerun, python3 = venv / "bin" / "singlerun", venv / "bin" / "python"
        env = {**os.environ, "SINGLERUN_LOCK_DIR": tmp}
        cases = {
            "singlerun -n x -- true": [singlerun, "-n", "x", "--", "true"],
            "flock -n f true": ["flock", "-n", f"{tmp}/f", "true"],
            "python3 -c pass": [python3, "-c", "pass"],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for argv in cases.values():  # warm the page cache
            subprocess.run(argv, env=env, check=True)
        for _ in range(rounds):
            for name, argv in cases.items():
                t0 = time.perf_counter()
                subprocess.run(argv, env=env, check=True)
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python3 -c pass"])
    flock = statistics.median(times["flock -n f true"])
    print(f"{rounds} interleaved rounds, {os.cpu_count()} CPUs, {sys.version.split()[0]}\n")
    print("| command | median ms | p90 ms | × python3 -c pass | × flock |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, samples in times.items():
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(
            f"| `{name}` | {med * 1000:.1f} | {p90 * 1000:.1f} | {med / base:.2f} | "
            f"{med / flock:.1f} |"
        )


if __name__ == "__main__":
    main()
