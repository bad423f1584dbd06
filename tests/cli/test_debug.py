"""A bug shows as one `internal error` line; SINGLERUN_DEBUG=1 adds the traceback, and the
line says which of the two the user has, so a bug report can carry what is needed."""

import os
import subprocess
import sys

import pytest

# A real singlerun process whose runner has a bug: the injected exception stands for any
# exception singlerun does not expect.
BUGGY = (
    "import sys, singlerun.runner as r\n"
    "def bug(cfg):\n"
    "    raise ValueError('boom')\n"
    "r.run = bug\n"
    "from singlerun.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _run(tmp_path, debug: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    if debug is not None:
        env["SINGLERUN_DEBUG"] = debug
    argv = [sys.executable, "-c", BUGGY, "--lock-dir", str(tmp_path), "-n", "k", "--", "true"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("debug", [None, "", "0"])
def test_a_bug_is_one_line_that_says_how_to_get_the_traceback(tmp_path, debug):
    r = _run(tmp_path, debug)
    assert r.returncode == 125
    assert r.stderr == (
        "singlerun: internal error: ValueError: boom "
        "(SINGLERUN_DEBUG=1 prints the traceback, for a bug report)\n"
    )


def test_singlerun_debug_prints_the_traceback_and_says_so(tmp_path):
    r = _run(tmp_path, "1")
    assert r.returncode == 125
    lines = r.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert ", in bug" in r.stderr and lines[-2] == "ValueError: boom"  # where, and what
    assert lines[-1] == (
        "singlerun: internal error: ValueError: boom "
        "(the traceback is above; please include it in a bug report)"
    )
