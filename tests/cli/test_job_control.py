"""Job control in a real interactive shell on a pseudo-terminal (docs/CONTRACT.md §7, issue 11 §7):
Ctrl-Z stops singlerun and its job together ($? 148), fg/bg resume both, a background job
that reads the terminal stops as it would without singlerun, and the shell survives."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import SINGLERUN, wait_for

pytestmark = pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")


class Shell:
    """An interactive bash whose terminal is a pty we type into."""

    def __init__(self, env: dict[str, str]) -> None:
        env = {**env, "PS1": "$ ", "TERM": "dumb", "PROMPT_COMMAND": ""}
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.out = b""
        self.expect(rb"\$ ")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: bytes, timeout: float = 15) -> re.Match[bytes]:
        """Wait until `pattern` (a regex) appears in output not yet consumed."""
        deadline = time.monotonic() + timeout
        while not (m := re.search(pattern, self.out)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"the shell never printed {pattern!r}; got {self.out!r}")
            if select.select([self.master], [], [], remaining)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    pytest.fail(f"the shell exited waiting for {pattern!r}; got {self.out!r}")
                self.out += chunk
        self.out = self.out[m.end() :]
        return m

    def status(self) -> int:
        """$? of the last foreground command, as the shell reports it."""
        self.send("echo RC=$?\n")
        return int(self.expect(rb"RC=(\d+)\r?\n").group(1))

    def alive(self) -> bool:
        return os.waitpid(self.pid, os.WNOHANG) == (0, 0)

    def close(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.master)


@pytest.fixture
def shell(sr) -> Iterator[Shell]:
    s = Shell({**sr.env, "SR": " ".join(SINGLERUN)})
    try:
        yield s
    finally:
        s.close()


def _procs(shell: Shell) -> list[psutil.Process]:
    """The shell's singlerun and its job (once it has one)."""
    try:
        for p in psutil.Process(shell.pid).children():
            return [p, *p.children()]
    except psutil.NoSuchProcess:
        pass
    return []


def _started(shell: Shell) -> bool:
    return len(_procs(shell)) == 2


def _states(shell: Shell) -> set[str]:
    try:
        return {p.status() for p in _procs(shell)}
    except psutil.NoSuchProcess:
        return set()


def _job_has_terminal(shell: Shell) -> bool:
    """Whether the job's process group is the terminal's foreground (read on the master)."""
    procs = _procs(shell)
    return len(procs) == 2 and os.tcgetpgrp(shell.master) == procs[1].pid


def _key_free(sr, name: str) -> bool:
    return sr.run("-n", name, "--", "true").returncode == 0


def _singlerun_has_terminal(shell: Shell) -> bool:
    procs = _procs(shell)
    return bool(procs) and os.tcgetpgrp(shell.master) == procs[0].pid


def test_ctrl_z_stops_both_then_bg_and_fg_resume_them(sr, shell):
    shell.send("$SR -n z -- sleep 30\n")
    wait_for(lambda: _started(shell), what="job started")
    shell.send("\x1a")  # Ctrl-Z
    shell.expect(rb"Stopped")
    assert shell.status() == 148  # as for a plain command
    wait_for(lambda: _states(shell) == {psutil.STATUS_STOPPED}, what="both stopped")
    shell.send("$SR -n z -- sleep 30\n")  # the key stays held while stopped
    shell.expect(rb"already running")
    shell.send("fg\n")  # both go on, and the job has the terminal again
    wait_for(lambda: psutil.STATUS_STOPPED not in _states(shell), what="both resumed by fg")
    wait_for(lambda: _job_has_terminal(shell), what="fg gave the job the terminal")
    shell.send("\x1a")
    shell.expect(rb"Stopped")
    shell.send("bg\n")
    wait_for(lambda: psutil.STATUS_STOPPED not in _states(shell), what="both resumed by bg")
    shell.send("fg\n")  # bash gives singlerun the terminal; Ctrl-C is passed on to the job
    wait_for(lambda: _singlerun_has_terminal(shell) or _job_has_terminal(shell), what="fg")
    shell.send("\x03")  # Ctrl-C now reaches the job: the terminal is the job's again
    assert shell.status() == 130
    assert shell.alive()
    assert _key_free(sr, "z")


def test_kill_of_a_stopped_job_ends_both(sr, shell):
    shell.send("$SR -n z -- sleep 30\n")
    wait_for(lambda: _started(shell), what="job started")
    shell.send("\x1a")
    shell.expect(rb"Stopped")
    shell.send("kill %1\n")  # a stopped job killed from the shell: both end, the shell lives
    wait_for(lambda: not _procs(shell), what="singlerun and its job ended")
    assert shell.status() == 0 and shell.alive()
    wait_for(lambda: _key_free(sr, "z"), what="lock released")


def test_a_background_job_reading_the_terminal_stops_and_fg_lets_it_go_on(sr, shell):
    shell.send("$SR -n c -- cat &\n")
    wait_for(lambda: _states(shell) == {psutil.STATUS_STOPPED}, what="stopped by SIGTTIN")
    shell.send("jobs\n")
    shell.expect(rb"Stopped")
    shell.send("fg\n")
    wait_for(lambda: _job_has_terminal(shell), what="fg gave the job the terminal")
    shell.send("hello\n")
    shell.expect(rb"hello\r?\n(.*\r?\n)?hello")  # echoed by the terminal, then by cat
    shell.send("\x04")  # end of input: cat exits 0
    assert shell.status() == 0
    assert shell.alive()
    wait_for(lambda: _key_free(sr, "c"), what="lock released")


def test_ctrl_z_then_bg_then_kill_leaves_the_shell_alive(sr, shell):
    # The shell used to exit here: singlerun took the terminal back although it was a
    # background job, and the shell's next read failed.
    shell.send("$SR -n b -- sleep 30\n")
    wait_for(lambda: _started(shell), what="job started")
    shell.send("\x1a")
    shell.expect(rb"Stopped")
    shell.send("bg\n")
    wait_for(lambda: psutil.STATUS_STOPPED not in _states(shell), what="resumed")
    shell.send("kill %1\n")
    wait_for(lambda: not _procs(shell), what="ended")
    for _ in range(3):
        shell.send("true\n")
        assert shell.status() == 0
    assert shell.alive()
