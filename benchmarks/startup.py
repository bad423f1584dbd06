"""Start-up, storms and waiting, each beside its floor (issue 9).

1. Start-up: `singlerun -n x -- true` against `python3 -c pass`, the import floor
   `python3 -c "import click"` and `flock -n f true`, interleaved round by round so
   that machine noise hits them alike; singlerun's own cost is its median minus the floor's.
2. Storm: N launchers at once on one key: time until all are decided, against the CPU floor
   (N * singlerun's start-up / cores), and against N bare `import click` at once.
3. Waiting for one of N slots: a waiter's CPU while it waits, and the handoff (holder's last
   act to the waiter's job start), for --max-concurrent 1 and 4.
4. FIFO order: waiters launched 50 ms apart on a held key, and how many ran out of order
   (singlerun --wait against flock(1)).

Usage: startup.py [ROUNDS] [--quick]   (--quick: one small round of each, with the test
environment's own singlerun instead of a fresh regular install: the suite runs it so the
script cannot rot)
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

ROOT = Path(__file__).resolve().parents[1]
STAMP = "date +%s%N > {}"


def _install(tmp: Path, quick: bool) -> tuple[Path, Path]:
    """singlerun and python3 as users get them: a regular install (bytecode and all) in a
    fresh virtual environment, whose interpreter also runs the floors."""
    if quick:
        return Path(sys.executable).with_name("singlerun"), Path(sys.executable)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)]
    subprocess.run(pip, check=True)
    return venv / "bin" / "singlerun", venv / "bin" / "python"


def startup(bin_: Path, python: Path, tmp: Path, rounds: int) -> dict[str, list[float]]:
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / "locks")}
    cases = {
        "python3 -c pass": [python, "-c", "pass"],
        'python3 -c "import click"': [python, "-c", "import click"],
        "singlerun -n x -- true": [bin_, "-n", "x", "--", "true"],
        "flock -n f true": ["flock", "-n", str(tmp / "f"), "true"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv in cases.values():  # warm the page cache
        subprocess.run(argv, env=env, check=True)
    for _ in range(rounds):
        for name, argv in cases.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, check=True)
            times[name].append(time.perf_counter() - t0)
    return times


# The job of the storm: mkdir is atomic, so a second job inside at once is an overlap.
STORM_JOB = "mkdir {box}/in || echo overlap >> {box}/violations; sleep 0.05; rmdir {box}/in"


def _all_at_once(argvs: list[list[str | Path]], env: dict[str, str]) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, env=env, stderr=subprocess.DEVNULL) for a in argvs]
    codes = [p.wait() for p in procs]
    return time.perf_counter() - t0, codes


def storm(bin_: Path, python: Path, tmp: Path, n: int) -> dict[str, float | int]:
    """N launchers at once on one key, and N bare `import click` at once: the
    second is what the machine itself does with N interpreters starting together."""
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / "storm")}
    box = tmp / "box"
    box.mkdir()
    job = ["sh", "-c", STORM_JOB.format(box=box)]
    took, codes = _all_at_once([[bin_, "-n", "hot", "--", *job]] * n, env)
    floor_took, _ = _all_at_once([[python, "-c", "import click"]] * n, env)
    violations = box / "violations"
    return {
        "took": took,
        "floor_took": floor_took,
        "ran": codes.count(0),
        "refused": codes.count(75),
        "overlaps": len(violations.read_text().split()) if violations.exists() else 0,
    }


def slot_waiter(bin_: Path, tmp: Path, slots: int, seconds: float) -> tuple[float, float]:
    """(waiter CPU while waiting, handoff ms) with all `slots` slots held for `seconds`."""
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / f"slots{slots}")}
    a, b = tmp / f"a{slots}", tmp / f"b{slots}"
    run = [bin_, "-n", "s", "--max-concurrent", str(slots)]
    holders = [
        subprocess.Popen(
            [*run, "--", "sh", "-c", f"sleep {seconds + i}; {STAMP.format(a)}"], env=env
        )
        for i in range(slots)
    ]
    time.sleep(0.5)
    waiter = subprocess.Popen([*run, "--wait", "--", "sh", "-c", STAMP.format(b)], env=env)
    proc = psutil.Process(waiter.pid)
    time.sleep(0.4)  # past its start-up: from here on it only waits
    before = proc.cpu_times()
    time.sleep(seconds - 1.0)
    after = proc.cpu_times()
    assert waiter.wait() == 0
    for h in holders:
        h.terminate()  # forwarded to its job
        h.wait()
    cpu = (after.user + after.system) - (before.user + before.system)
    return cpu, (int(b.read_text()) - int(a.read_text())) / 1e6


def fifo(bin_: Path, tmp: Path, waiters: int) -> dict[str, int]:
    """Out-of-order starts among waiters launched 50 ms apart on a held key."""
    env = {**os.environ, "SINGLERUN_LOCK_DIR": str(tmp / "fifo")}
    tools = {
        "singlerun --wait": lambda cmd: [bin_, "-n", "f", "--wait", "--", "sh", "-c", cmd],
        "flock(1)": lambda cmd: ["flock", str(tmp / "fifo.lock"), "sh", "-c", cmd],
    }
    out = {}
    for name, argv in tools.items():
        order = tmp / f"order-{name[:4]}"
        holder = subprocess.Popen(argv("sleep 1"), env=env)
        time.sleep(0.3)
        procs = []
        for i in range(waiters):
            procs.append(subprocess.Popen(argv(f"echo {i} >> {order}"), env=env))
            time.sleep(0.05)
        assert holder.wait() == 0 and all(p.wait() == 0 for p in procs)
        ran = [int(x) for x in order.read_text().split()]
        out[name] = sum(1 for i, x in enumerate(ran) for y in ran[i + 1 :] if x > y)
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    rounds = 1 if quick else int(args[0]) if args else 40
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bin_, python = _install(tmp, quick)
        times = startup(bin_, python, tmp, rounds)
        n = 10 if quick else 100
        st = storm(bin_, python, tmp, n)
        waits = {s: slot_waiter(bin_, tmp, s, 2.0 if quick else 10.0) for s in (1, 4)}
        inversions = fifo(bin_, tmp, 3 if quick else 8)
    med = {name: statistics.median(s) for name, s in times.items()}
    base, flock = med["python3 -c pass"], med["flock -n f true"]
    floor = med['python3 -c "import click"']
    print(f"{rounds} interleaved rounds, {cores} CPUs, Python {sys.version.split()[0]}\n")
    print("| command | median ms | p90 ms | × python3 -c pass | × flock |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, samples in times.items():
        p90 = max(samples) if len(samples) < 2 else statistics.quantiles(samples, n=10)[-1]
        print(
            f"| `{name}` | {med[name] * 1000:.1f} | {p90 * 1000:.1f} | "
            f"{med[name] / base:.2f} | {med[name] / flock:.1f} |"
        )
    own = (med["singlerun -n x -- true"] - floor) * 1000
    print(f"\nsinglerun's own cost beyond importing click: {own:.1f} ms (goal ≤ 5)\n")
    cpu_floor = n * med["singlerun -n x -- true"] / cores
    took, floor_took = float(st["took"]), float(st["floor_took"])
    print(f"| {n} at once | all decided | × CPU floor ({cpu_floor:.2f} s) | goal |")
    print("| --- | ---: | ---: | --- |")
    print(f"| `singlerun -n hot -- sh -c …` | {took:.2f} s | {took / cpu_floor:.2f} | ≤ 1.2 |")
    print(f'| `python3 -c "import click"` | {floor_took:.2f} s | ', end="")
    print(f"{floor_took / cpu_floor:.2f} | |")
    print(f"\nsinglerun's storm / the import floor's storm: {took / floor_took:.2f}")
    print(f"ran / refused (75) / overlaps: {st['ran']} / {st['refused']} / {st['overlaps']}")
    print("\n| waiting for a slot | waiter CPU while waiting | handoff ms |")
    print("| --- | ---: | ---: |")
    for slots, (cpu, ms) in waits.items():
        print(f"| --max-concurrent {slots} | {cpu:.3f} s | {ms:.1f} |")
    w = 3 if quick else 8
    print(f"\n| {w} waiters launched 50 ms apart | out-of-order pairs |\n| --- | ---: |")
    for name, count in inversions.items():
        print(f"| {name} | {count} |")


if __name__ == "__main__":
    main()
