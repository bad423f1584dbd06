"""Short options before the command are spelled long before click parses them (start-up);
nothing else may change."""

import pytest

from singlerun.cli import cli


def _long_forms(args):
    return cli.commands["run"]._long_forms(args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n", "x", "--", "true"], ["--name", "x", "--", "true"]),
        (["-n", "-q", "-q", "true"], ["--name", "-q", "--quiet", "true"]),  # a value stays
        (["-g", "g", "-o", "cmd", "-n", "y"], ["--group", "g", "--close", "cmd", "-n", "y"]),
        (["-qv", "-n", "x", "t"], ["-qv", "-n", "x", "t"]),  # combined: click's
        (["-nfoo", "t"], ["-nfoo", "t"]),  # attached value: click's
        (["--name=-n", "-q", "t"], ["--name=-n", "--quiet", "t"]),
        (["--wait-timeout", "-1", "-q", "t"], ["--wait-timeout", "-1", "--quiet", "t"]),
        (["-x", "-n", "t"], ["-x", "-n", "t"]),  # unknown: click reports it
    ],
)
def test_long_forms(args, expected):
    assert _long_forms(args) == expected
