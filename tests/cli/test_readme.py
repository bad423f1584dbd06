"""The README's examples do what the README says: every ```console block is a transcript
(`$ ` commands, then their output, `…` matching anything) run in order, as a user would."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import records, wait_for

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _steps() -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def _matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None


def test_readme_has_transcripts():
    assert len(_steps()) >= 8


def test_readme_transcripts_run_as_written(sr, tmp_path):
    env = {**sr.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command, expected in _steps():
        if command.endswith("&"):
            subprocess.Popen(
                ["bash", "-c", command[:-1]],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for(lambda: re.search(r'"child_pid":\d', records(sr.lock_dir)), what=command)
            continue
        r = subprocess.run(
            ["bash", "-c", command],
            env=env,
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
        got = r.stdout.splitlines()
        assert len(got) == len(expected) and all(map(_matches, expected, got)), (
            f"$ {command}\nexpected:\n" + "\n".join(expected) + "\ngot:\n" + r.stdout
        )


def test_the_self_wrapping_recipe_locks_even_inside_another_job(sr, tmp_path):
    """The README's reindex.sh recipe, called from inside another singlerun job, still
    takes its own key (an earlier recipe checked only SINGLERUN_JOB_ID and ran twice)."""
    import subprocess

    from tests.conftest import SINGLERUN

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    recipe = readme.split("# reindex.sh:", 1)[1].split("make reindex", 1)[0]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "singlerun").write_text(f'#!/bin/sh\nexec {" ".join(SINGLERUN)} "$@"\n')
    (bindir / "singlerun").chmod(0o755)
    script = tmp_path / "reindex.sh"
    script.write_text(f"#!/bin/sh\n#{recipe}echo in $SINGLERUN_JOB_NAME; sleep 1\n")
    script.chmod(0o755)
    env = {**sr.env, "PATH": f"{bindir}:{sr.env['PATH']}"}
    first = subprocess.Popen([str(script)], env=env, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline() == "in reindex\n"
    # The same script from inside another job: it must wait for, not overlap with, the first.
    r = sr.run("-n", "outer", "--", str(script), env={"PATH": env["PATH"]}, timeout=30)
    assert r.returncode == 0 and r.stdout == "in reindex\n"
    assert first.wait(10) == 0
