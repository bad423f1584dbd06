"""Shared fixtures: the real program as a subprocess, and no process left behind."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["tests.network.fixtures"]  # the servers, for tests/network and tests/contract

HELPERS = Path(__file__).parent / "helpers"
PRINT_SIGNALS = [sys.executable, str(HELPERS / "print_signals.py")]
OVERLAP_JOB = [sys.executable, str(HELPERS / "overlap_job.py")]
SINGLERUN = [sys.executable, "-m", "singlerun"]

# Become a child subreaper: jobs orphaned by a killed singlerun are re-parented to the test
# process (PID 1 here never reaps), so the teardown can reap them.
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

# A suite started in the background of a non-interactive shell inherits SIGINT and SIGQUIT
# ignored, and so would every singlerun it starts (singlerun keeps ignored signals ignored
# for its job). Handled signals are reset to their defaults by exec: give children those.
for _sig in (signal.SIGINT, signal.SIGQUIT):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll `predicate` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


def dead(pid: int) -> bool:
    """The process has exited: gone, or a zombie (PID 1 here reaps no orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def records(lock_dir: Path) -> str:
    """The concatenated text of every holder record in `lock_dir` ('' if none)."""
    return "".join(p.read_text() for p in sorted(lock_dir.glob("*.rec")) if p.exists())


def read_line(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """One line of the process's stdout, failing (not hanging) after `timeout`."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            pytest.fail(f"no output from {proc.args} within {timeout}s")
    return proc.stdout.readline().strip()


def _kill_descendants() -> None:
    me = psutil.Process()
    for _ in range(50):
        kids = me.children(recursive=True)
        if not kids:
            return
        for p in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(kids, timeout=2)
        while True:  # reap whatever was re-parented to us
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    yield
    _kill_descendants()


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    d = tmp_path / "locks"
    d.mkdir(mode=0o700)
    return d


class Singlerun:
    """Runs the real program against one lock directory."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
        self.env["SINGLERUN_LOCK_DIR"] = str(lock_dir)

    def start(self, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(
            [*SINGLERUN, *args], env={**self.env, **(env or {})}, text=True, **kw
        )

    def run(self, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        env = {**self.env, **kw.pop("env", {})}
        return subprocess.run(
            [*SINGLERUN, *args], env=env, capture_output=True, text=True, timeout=timeout, **kw
        )

    def start_holder(
        self, *args: str, exit_on: str | None = "TERM", env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen, int]:
        """Start a singlerun whose job prints signals; return it once the job is ready."""
        job = [*PRINT_SIGNALS, *([exit_on] if exit_on else [])]
        proc = self.start(*args, "--", *job, env=env)
        line = read_line(proc)
        assert line.startswith("ready"), line
        return proc, int(line.split()[1])


@pytest.fixture
def sr(lock_dir: Path) -> Singlerun:
    return Singlerun(lock_dir)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def pytest_sessionfinish(session):
    """Under pytest-xdist, a worker hands its torture and chaos figures to the controller."""
    from tests.torture.report import FIGURES

    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["figures"] = dict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # the controller's side of the above (xdist only)
    from tests.torture.report import FIGURES

    FIGURES.update(getattr(node, "workeroutput", {}).get("figures", {}))


def pytest_terminal_summary(terminalreporter):  # the torture and chaos figures, if any ran
    from tests.torture.report import FIGURES, table

    if FIGURES:
        terminalreporter.write_sep("=", "torture figures")
        terminalreporter.write_line(table())
