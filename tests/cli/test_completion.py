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


def test_a_runs_options_complete_as_the_first_word(sr):
    """Issue 24.7: `singlerun --lo<TAB>` offered nothing (run is the default subcommand)."""
    assert _complete(sr, "singlerun --lo", 1) == {"--lock-dir"}
    assert {"--version", "--verbose"} <= _complete(sr, "singlerun --ve", 1)
    assert _complete(sr, "singlerun st", 1) == {"status", "stop"}  # still the subcommands


def test_the_written_completion_file_completes_in_bash(sr, tmp_path):
    """The README's way: the file written once, then bash loads it, not singlerun."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = tmp_path / "singlerun.bash"
    r = sr.run(env={"_SINGLERUN_COMPLETE": "bash_source"})
    script.write_text(r.stdout)
    probe = (
        f"source {script}; COMP_WORDS=(singlerun stat); COMP_CWORD=1; "
        "_singlerun_completion singlerun; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    bin_dir = os.path.dirname(sys.executable)  # where the console script is installed
    env = {**sr.env, "PATH": f"{bin_dir}:{sr.env.get('PATH', '')}"}
    out = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["status"], out.stderr
