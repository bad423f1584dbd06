"""The man page and the README document every option and exit status the code has."""

import shutil
import subprocess
from pathlib import Path

import click
import pytest

from singlerun.cli import cli

ROOT = Path(__file__).resolve().parents[2]
MAN = (ROOT / "man" / "singlerun.1").read_text()
README = (ROOT / "README.md").read_text()
EXIT_CODES = ["0", "2", "75", "124", "125", "126", "127", "128+N"]


def _long_options() -> set[str]:
    opts = set()
    commands: list[click.Command] = [cli, *cli.commands.values()]
    for command in commands:
        for param in command.params:
            opts.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return opts


def _envvars() -> set[str]:
    return {p.envvar for c in cli.commands.values() for p in c.params if isinstance(p.envvar, str)}


@pytest.mark.parametrize("option", sorted(_long_options()))
def test_every_option_is_documented(option):
    assert option.replace("-", r"\-") in MAN, f"{option} missing from man/singlerun.1"
    assert f"`{option}" in README, f"{option} missing from README.md"


@pytest.mark.parametrize("var", sorted(_envvars()))
def test_every_environment_variable_is_documented(var):
    assert var in MAN and var in README


@pytest.mark.parametrize("code", EXIT_CODES)
def test_every_exit_status_is_documented(code):
    assert f".B {code}" in MAN
    assert f"| {code} |" in README or f"| {code}–255 |" in README


@pytest.mark.skipif(not shutil.which("groff"), reason="groff is installed by ./run-tests")
def test_man_page_renders_without_warnings():
    r = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(ROOT / "man" / "singlerun.1")],
        capture_output=True,
        text=True,
    )
    assert (r.returncode, r.stderr) == (0, "")
