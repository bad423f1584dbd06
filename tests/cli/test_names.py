"""Hostile names and groups stay inside the lock directory and never share a lock."""

import os

import pytest

from tests.conftest import stop

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
