"""Property-based: the record parser and the key encoding against arbitrary input."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from singlerun.errors import UsageError
from singlerun.keys import JobKey
from singlerun.record import Record, encode, parse
from tests.conftest import stop
from tests.torture.report import FIGURES, LONG

MANY = settings(max_examples=20_000 if LONG else 600, deadline=None)
CLI = settings(
    max_examples=60 if LONG else 8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

VALID = encode(
    Record(
        job_id="01X",
        group="g",
        name="n",
        pid=1,
        host="h",
        user="u",
        started_at=1.0,
        command=["a", "b"],
        child_pid=2,
        token="01X",
    )
)
records = st.one_of(
    st.binary(max_size=2048),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.integers(2, 10**6).map(lambda v: VALID.replace(b"record 1", f"record {v}".encode())),
    st.binary(max_size=64).map(lambda junk: VALID[:40] + junk + VALID[40:]),
)


@MANY
@given(records)
def test_parser_never_raises(data):
    FIGURES["bad inputs: record bytes (parser)"] += 1
    result = parse(data)
    assert result is None or isinstance(result, Record)


@MANY
@given(st.integers(2, 10**9))
def test_future_versions_are_unreadable(version):
    FIGURES["bad inputs: record versions"] += 1
    assert parse(VALID.replace(b"record 1", f"record {version}".encode())) is None


@CLI
@given(data=records)
def test_a_run_over_any_record_proceeds(sr, data):
    FIGURES["bad inputs: record files (real runs)"] += 1
    rec = sr.lock_dir / f"{JobKey('default', 'k').stem}.rec"
    rec.write_bytes(data)
    r = sr.run("-n", "k", "--", "echo", "ran")
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") <= 1


@CLI
@given(data=records)
def test_a_held_key_with_any_record_conflicts(sr, data):
    FIGURES["bad inputs: record files (real runs)"] += 1
    holder, _ = sr.start_holder("-n", "held")
    (sr.lock_dir / f"{JobKey('default', 'held').stem}.rec").write_bytes(data)
    r = sr.run("-n", "held", "--", "echo", "ran")
    assert r.returncode == 75 and r.stdout == "", r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    stop(holder)


names = st.text(min_size=0, max_size=220)
# What a command line can carry: no NUL (argv strings end at one), no lone surrogates.
argv_text = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=200,
)


@MANY
@given(names, names, names, names)
def test_keys_are_contained_and_injective(g1, n1, g2, n2):
    FIGURES["bad inputs: names and groups"] += 4
    stems = []
    for g, n in ((g1, n1), (g2, n2)):
        try:
            key = JobKey.make(g, n)
        except UsageError:
            stems.append(None)
            continue
        stem = key.stem
        for suffix in (".lock", ".rec", ".queue", ".stop", "@1023.lock", "@1023.rec"):
            name = stem + suffix
            assert "/" not in name and "\0" not in name and name not in (".", "..")
            assert len(name.encode()) <= 255
            assert os.path.basename(name) == name
        stems.append(stem)
    if None not in stems and (g1, n1) != (g2, n2):
        assert stems[0] != stems[1]


@CLI
@given(group=argv_text, name=argv_text)
def test_any_name_stays_inside_the_lock_directory(sr, tmp_path_factory, group, name):
    FIGURES["bad inputs: names and groups (real runs)"] += 1
    before = {p for p in sr.lock_dir.parent.rglob("*")}
    r = sr.run("-g", group, "-n", name, "--", "true")
    assert "Traceback" not in r.stderr
    assert r.returncode in (0, 2), r.stderr
    if r.returncode == 2:
        assert r.stderr.startswith("singlerun: the job ") and r.stderr.count("\n") == 1
    created = {p for p in sr.lock_dir.parent.rglob("*")} - before
    assert all(sr.lock_dir in p.parents for p in created), created
