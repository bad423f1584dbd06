"""The man page and the README document every option and exit status the code has."""

import re
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


def _commands() -> list[click.Command]:
    """Every subcommand, the lazily loaded ones included."""
    ctx = click.Context(cli)
    found = [cli.get_command(ctx, name) for name in cli.list_commands(ctx)]
    assert len(found) == 7 and all(found)
    return [c for c in found if c is not None]


def _long_options() -> set[str]:
    opts = set()
    for command in [cli, *_commands()]:
        for param in command.params:
            opts.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return opts


def _envvars() -> set[str]:
    return {p.envvar for c in _commands() for p in c.params if isinstance(p.envvar, str)}


def _in_man(option: str, man: str) -> bool:
    """The whole option name in roff (`\\-\\-wait`, and not just `\\-\\-wait\\-timeout`)."""
    return bool(re.search(re.escape(option.replace("-", "\\-")) + r"(?!\\-|\w)", man))


def _in_readme(option: str, readme: str) -> bool:
    return bool(re.search(re.escape(f"`{option}") + r"(?![\w-])", readme))


@pytest.mark.parametrize("option", sorted(_long_options()))
def test_every_option_is_documented(option):
    assert _in_man(option, MAN), f"{option} missing from man/singlerun.1"
    assert _in_readme(option, README), f"{option} missing from README.md"


def test_whole_option_names_are_matched():
    assert not _in_man("--wait", r".B \-\-wait\-timeout")
    assert _in_man("--wait", r".B \-\-wait" + "\n" + r".B \-\-wait\-timeout")
    assert not _in_readme("--wait", "`--wait-timeout D`")
    assert _in_readme("--wait", "`--wait`, `--wait-timeout`")


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
