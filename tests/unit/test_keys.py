import os

import pytest

from singlerun.errors import UsageError
from singlerun.keys import JobKey

HOSTILE = [
    "..",
    ".",
    "/",
    "a/b",
    "a_b",
    "a%2Fb",
    "../../etc/passwd",
    " ",
    "a b",
    "日本語",
    "x" * 200,
    "é" * 200,
    "~x",
    "a.b",
    "%",
    "-rf",
    "con",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_stem_is_one_safe_file_name(name):
    stem = JobKey.make("g", name).stem
    assert "/" not in stem and stem not in (".", "..") and "\0" not in stem
    assert len(f"{stem}@99.queue".encode()) <= 255
    assert os.path.basename(stem) == stem


def test_encoding_is_injective():
    keys = {JobKey.make(g, n) for g in HOSTILE for n in HOSTILE}
    assert len({k.stem for k in keys}) == len(keys)
    # group/name boundaries cannot be forged either
    assert JobKey.make("a.b", "c").stem != JobKey.make("a", "b.c").stem


@pytest.mark.parametrize("name", ["nightly", "a/b", "日本語", "a b", "..", "x" * 50])
def test_from_stem_round_trips(name):
    key = JobKey.make("backups", name)
    assert JobKey.from_stem(key.stem) == key


def test_long_names_are_hashed_and_distinct():
    a, b = JobKey.make("g", "é" * 200), JobKey.make("g", "é" * 199 + "e")
    assert a.stem.startswith("~") and a.stem != b.stem
    assert JobKey.from_stem(a.stem) is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("x" * 201, "longer than 200"),
        ("a\nb", "control character"),
        ("a\0b", "control character"),
        ("\x7f", "control character"),
        ("a\udcffb", "UTF-8"),
    ],
)
def test_invalid_names(name, message):
    with pytest.raises(UsageError, match=message):
        JobKey.make("default", name)
    with pytest.raises(UsageError, match=message.replace("name", "group")):
        JobKey.make(name, "n")


def test_derived_name_like_run_one():
    assert JobKey.for_command("default", ["./backup.sh"]).name == "backup.sh"
    full = JobKey.for_command("default", ["./backup.sh", "--full"])
    assert full.name.startswith("backup.sh-") and len(full.name) == len("backup.sh-") + 10
    assert full == JobKey.for_command("default", ["./backup.sh", "--full"])  # stable
    assert full != JobKey.for_command("default", ["./backup.sh", "--fast"])
    # argument boundaries matter: ["a b"] is not ["a", "b"]
    assert JobKey.for_command("d", ["x", "a b"]) != JobKey.for_command("d", ["x", "a", "b"])
