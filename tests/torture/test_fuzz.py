"""Property-based: the record parser and the key encoding against arbitrary input."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from singlerun.errors import UsageError
from singlerun.keys import JobKey
from singlerun.record import Record, encode, parse
from tests.conftest import OVERLAP_JOB, stop
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


# -- a hostile lock directory, between runs --------------------------------------------------

_DOCUMENTED = {0, 1, 2, 3, 4, 75, 124, 125, 128 + 9, 128 + 15}  # 128+N: stopped jobs


def _plant(rng, d, victim):
    """One random hostile entry at a name singlerun uses: bytes, a plausible record, a
    symlink, a FIFO or a directory, over whatever was there."""
    import shutil
    import time

    key = rng.choice(["a", "b", "c"])
    stem = JobKey("default", key).stem
    name = rng.choice(
        [f"{stem}.lock", f"{stem}.rec", f"{stem}@1.rec", f"{stem}.stop", f"{stem}.queue",
         "history.log", "history.db", "history.db-journal", f"{stem}.queue/0000000000000001"]
    )  # fmt: skip
    path = d / name
    if path.parent != d and not path.parent.is_dir():
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    kind = rng.choice(["bytes", "record", "symlink", "fifo", "dir"])
    if kind == "bytes":
        path.write_bytes(rng.randbytes(rng.randrange(0, 300)))
    elif kind == "record":
        pid = rng.choice([1, -1, 0, os.getpid(), 2**31, rng.randrange(2, 4_000_000)])
        rec = Record(
            job_id=f"F{rng.randrange(10**6)}", group="default", name=key, pid=pid,
            host=rng.choice([os.uname().nodename, "elsewhere"]), user="u",
            started_at=time.time(), pid_started=rng.choice([None, 1.0, time.time()]),
            child_pid=rng.choice([None, pid, os.getpid()]), child_started=None,
        )  # fmt: skip
        path.write_bytes(encode(rec))
    elif kind == "symlink":
        path.symlink_to(rng.choice([victim, d / "nowhere", "/dev/zero", d]))
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


def test_hostile_directory(sr, tmp_path):
    """Random bytes, records, symlinks, FIFOs and directories planted between commands:
    every command ends (nothing blocks), with a documented status and one-line errors;
    no symlink's target is touched, no bystander is signalled, and no two jobs overlap."""
    import random
    import subprocess

    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    bystander = subprocess.Popen(["sleep", "300"])
    work = tmp_path / "work"
    work.mkdir()
    job = [*OVERLAP_JOB, str(work), "0.2"]
    rounds = 60 if LONG else 12
    try:
        for _ in range(rounds):
            for _ in range(rng.randrange(1, 4)):
                _plant(rng, sr.lock_dir, victim)
            key = rng.choice(["a", "b", "c"])
            pair = [sr.start("-n", key, "--wait-timeout", "2s", "--", *job) for _ in range(2)]
            results = [
                sr.run("status"),
                sr.run("status", "--json"),
                sr.run("history", "--limit", "5"),
                sr.run("stop", "-n", rng.choice(["a", "b", "c"]), "--timeout", "2s"),
                sr.run("clean", "--dry-run"),
            ]
            for p in pair:
                out, err = p.communicate(timeout=30)
                results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
            for r in results:
                FIGURES["bad inputs: hostile directories"] += 1
                assert r.returncode in _DOCUMENTED, (r.args, r.returncode, r.stderr, seed)
                assert "Traceback" not in r.stderr, (r.args, r.stderr, seed)
                for line in r.stderr.splitlines():
                    assert line.startswith("singlerun: "), (r.args, r.stderr, seed)
            assert victim.read_text() == "precious\n", seed
            assert bystander.poll() is None, seed
        assert not (work / "violations").exists(), seed
    finally:
        bystander.kill()
        bystander.wait()
