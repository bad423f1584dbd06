"""The README's first command works on a fresh copy, and installs the man page."""

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_install_command_runs_a_job_and_installs_the_man_page(tmp_path):
    first = re.search(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "pip install" in first and "singlerun" in first
    copy = tmp_path / "singlerun"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache"
        ),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SINGLERUN_", "VIRTUAL_ENV"))}
    env["TMPDIR"] = str(tmp_path)  # the default lock directory goes there
    r = subprocess.run(
        ["bash", "-c", first], cwd=copy, capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from singlerun\n"
    man = copy / ".venv" / "share" / "man" / "man1" / "singlerun.1"
    assert man.read_text() == (ROOT / "man" / "singlerun.1").read_text()
