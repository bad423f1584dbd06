"""Shell completion (click's) works through singlerun's default-to-run command group."""

import pytest


def _complete(sr, words: str, cword: int):
    r = sr.run(
        env={"_SINGLERUN_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    )
    assert r.returncode == 0, r.stderr
    return {line.split(",", 1)[1] for line in r.stdout.splitlines()}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(sr, shell):
    r = sr.run(env={"_SINGLERUN_COMPLETE": f"{shell}_source"})
    assert r.returncode == 0 and "_SINGLERUN_COMPLETE" in r.stdout


def test_completes_subcommands_and_options(sr):
    assert _complete(sr, "singlerun st", 1) == {"status", "stop"}
    assert {"--wait", "--wait-timeout"} <= _complete(sr, "singlerun -n x --wa", 3)
    assert _complete(sr, "singlerun status --j", 2) == {"--json"}
