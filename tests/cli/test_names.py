"""Hostile names and groups stay inside the lock directory and never share a lock."""

import json
import os

import pytest

from tests.conftest import stop, wait_for

HOSTILE = ["..", ".", "/", "a/b", "../../escape", "x" * 200, "日本語 ☃", " lead", "-n", "%2F"]


def _all_files(root):
    return {os.path.join(d, f) for d, dirs, files in os.walk(root) for f in files + dirs}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_inside(sr, tmp_path, name):
    before = _all_files(tmp_path)
    r = sr.run("-g", name, "-n", name, "--", "true")
    assert r.returncode == 0, r.stderr
    holder, _ = sr.start_holder("-g", name, "-n", name, "--wait")
    assert sr.run("-g", name, "-n", name, "--wait-timeout", "0.1", "--", "true").returncode == 75
    stop(holder)
    created = _all_files(tmp_path) - before
    assert created and all(p.startswith(str(sr.lock_dir) + os.sep) for p in created), created


def test_similar_names_are_distinct_keys(sr):
    holders = [sr.start_holder("-n", n)[0] for n in ("a/b", "a_b", "a%2Fb")]
    assert len(list(sr.lock_dir.glob("*.lock"))) == 3
    for n in ("a/b", "a_b", "a%2Fb"):
        assert sr.run("-n", n, "--", "true").returncode == 75
    assert sr.run("-n", "a", "-g", "b", "--", "true").returncode == 0
    for h in holders:
        stop(h)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 201,
        "tab\there",
        "nl\n",
        "nul-free-but-\x1b",
        "evil\u202eexe.txt",
        "zero\u200bwidth",
    ],
)
def test_invalid_names_are_usage_errors(sr, name):
    r = sr.run("-n", name, "--", "true")
    assert r.returncode == 2 and r.stderr.startswith("singlerun: the job name ")
    assert not list(sr.lock_dir.iterdir())


def test_derived_names_stay_distinct_for_bytes_that_are_not_text(sr, tmp_path):
    # Two programs whose names differ only in bytes that are not UTF-8 (\xfe, \xff).
    import subprocess

    from tests.conftest import SINGLERUN

    names = []
    for raw in (b"prog\xfe", b"prog\xff"):
        script = tmp_path / raw.decode(errors="surrogateescape")
        script.write_bytes(b"#!/bin/sh\necho $SINGLERUN_JOB_NAME\n")
        script.chmod(0o755)
        r = subprocess.run([*SINGLERUN, "--", str(script)], env=sr.env, capture_output=True)
        assert r.returncode == 0, r.stderr
        names.append(r.stdout)
    assert names[0] != names[1]


def test_what_records_hold_is_shown_escaped(sr):
    # A command with escape sequences (which a hostile record could hold too) must not reach
    # the terminal raw: status shows it escaped, as ls -b would.
    evil = "\x1b[31mred\x1b]0;title\x07"
    holder = sr.start("-n", "esc", "--", "sh", "-c", "sleep 30", evil)
    wait_for(lambda: "sleep 30" in sr.run("status").stdout, what="running")
    out = sr.run("status").stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred" in out  # shown, escaped
    assert json.loads(sr.run("status", "--json").stdout)[0]["command"][-1] == evil
    holder.terminate()
    holder.wait(10)
