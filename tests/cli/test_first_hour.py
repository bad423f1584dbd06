"""What a new user hits in the first hour (issue 20): store options before a subcommand's
name, a misspelt subcommand, an empty backend, the usage line, a URL a slash short."""

from __future__ import annotations

import json

import pytest


def test_store_options_before_the_subcommand_go_to_it(sr, tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    assert sr.run("--lock-dir", str(other), "-n", "here", "--", "true").returncode == 0
    for args in (("--lock-dir", str(other)), (f"--lock-dir={other}",)):
        r = sr.run(*args, "status", "--json")
        assert r.returncode == 0, r.stderr
        assert [e["name"] for e in json.loads(r.stdout)] == ["here"]
        r = sr.run(*args, "history", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)[0]["name"] == "here", r.stderr
    # No job named `status` ran, and no key for one was made.
    assert not [p for p in other.iterdir() if "status" in p.name]
    assert sr.run("--lock-dir", str(other), "stop", "-n", "here").returncode == 3
    assert sr.run("--lock-dir", str(other), "clean").returncode == 0
    # A command after `--` is still a command, whatever its name.
    r = sr.run("--lock-dir", str(other), "-n", "cmd", "--", "status")
    assert r.returncode == 127


@pytest.mark.parametrize(("typo", "meant"), [("stauts", "status"), ("histroy", "history")])
def test_a_misspelt_subcommand_gets_a_suggestion(sr, typo, meant):
    r = sr.run(typo)
    assert r.returncode == 127
    assert r.stderr == (
        f"singlerun: {typo}: command not found; did you mean 'singlerun {meant}'?\n"
    )
    assert sr.run("no-such-program-here").stderr.endswith("command not found\n")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--backend", ""), {}),
        (("--backend", " "), {}),
        ((), {"SINGLERUN_BACKEND": ""}),
    ],
)
def test_an_empty_backend_is_a_usage_error(sr, args, env):
    for cmd in (("-n", "x", "--", "true"), ("status",), ("history",)):
        r = sr.run(*args, *cmd, env=env)
        assert r.returncode == 2, (cmd, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("singlerun: "), r.stderr
        assert "empty" in r.stderr
    assert not list(sr.lock_dir.iterdir())  # nothing ran locally instead


def test_the_usage_lines(sr):
    r = sr.run("--help")
    assert "   or: singlerun run|status|stop|clean|history" in r.stdout


def test_a_redis_url_a_slash_short_says_so(sr):
    r = sr.run("--backend", "redis:/host:6379/0", "status")
    assert r.returncode == 2
    assert "no host: write redis://HOST[:PORT][/DB], with two slashes" in r.stderr
