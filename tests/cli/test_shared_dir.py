"""docs/CONTRACT.md §6's shared-directory model, with real users: a setgid group directory is shared
(exclusion, one FIFO queue, status and history, group read-write files whatever the umask);
a sticky world-writable one is refused across users with the recipe; nobody may stop
another's job, and a record forged by a group member names no process to signal."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import SINGLERUN, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root with useradd and setpriv to create and become real users",
)


@dataclass
class User:
    name: str
    uid: int
    gid: int

    def cmd(self, *args: str, umask: str = "077") -> list[str]:
        # Each user runs singlerun with a hostile umask: files must still be group rw.
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
            "sh", "-c", f'umask {umask} && exec "$@"', "sh", *SINGLERUN, *args,
        ]  # fmt: skip

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=30, **kw)  # type: ignore[call-overload,no-any-return]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@dataclass
class Team:
    group: str
    gid: int
    alice: User
    bob: User
    carol: User  # not in the group
    base: Path


@pytest.fixture(scope="module")
def reachable_interpreter() -> Iterator[None]:
    """Let other users reach the interpreter and the code: pyenv puts Python under /root
    (0700). Adds search (x) permission to the directories that lack it, and restores them."""
    import sys

    import singlerun

    changed: list[tuple[Path, int]] = []
    for target in (Path(sys.executable).resolve(), Path(singlerun.__file__).resolve()):
        for d in target.parents:
            mode = d.stat().st_mode
            if not mode & stat.S_IXOTH and (d, mode) not in changed:
                changed.append((d, mode))
                d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for d, mode in changed:
            d.chmod(stat.S_IMODE(mode))


@pytest.fixture(scope="module")
def team(reachable_interpreter: None) -> Iterator[Team]:
    tag = f"sr{os.getpid() % 100000}"
    group = f"{tag}ops"
    subprocess.run(["groupadd", group], check=True)
    users = []
    try:
        for who, extra in (("a", ["-G", group]), ("b", ["-G", group]), ("c", [])):
            name = f"{tag}{who}"
            subprocess.run(["useradd", "-M", "-N", "-g", "nogroup", *extra, name], check=True)
            users.append(name)
        ids = {n: (int(_id("-u", n)), int(_id("-g", n))) for n in users}
        base = Path(tempfile.mkdtemp(prefix="singlerun-team-"))
        base.chmod(0o755)
        alice, bob, carol = (User(n, *ids[n]) for n in users)
        yield Team(group, int(_getent_gid(group)), alice, bob, carol, base)
        shutil.rmtree(base, ignore_errors=True)
    finally:
        for name in users:
            for p in psutil.process_iter(["username"]):
                if p.info["username"] == name:
                    p.kill()
            subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", group], check=False)


def _id(flag: str, name: str) -> str:
    return subprocess.run(["id", flag, name], capture_output=True, text=True).stdout.strip()


def _getent_gid(group: str) -> str:
    return subprocess.run(["getent", "group", group], capture_output=True, text=True).stdout.split(
        ":"
    )[2]


def _group_dir(team: Team, name: str) -> Path:
    d = team.base / name
    d.mkdir()
    os.chown(d, team.alice.uid, team.gid)  # owned by a member, as `install -o alice` would
    d.chmod(0o2770)
    return d


def _status(user: User, d: Path, name: str) -> dict:
    r = user.run("status", "--json", "--lock-dir", str(d), "-n", name)
    assert r.returncode in (0, 1, 3), r.stderr  # running, stale, not running
    entries = json.loads(r.stdout)
    return entries[0] if entries else {}


def _stop_all(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()  # singlerun passes it on to its job, which holds our pipes
        p.communicate(timeout=10)


def test_a_setgid_group_directory_is_shared_by_its_members(team):
    d = _group_dir(team, "ops")
    ld = ("--lock-dir", str(d))
    holder = team.alice.start(*ld, "-n", "nightly", "--", "sleep", "30")
    waiter = None
    try:
        wait_for(lambda: _status(team.bob, d, "nightly").get("state") == "running", what="held")
        # Excluded by another member's lock: a conflict, not "Permission denied".
        r = team.bob.run(*ld, "-n", "nightly", "--", "true")
        assert r.returncode == 75, r.stderr
        assert r.stderr.count("\n") == 1 and "already running" in r.stderr, r.stderr
        waiter = team.bob.start(*ld, "-n", "nightly", "--wait", "--", "echo", "bob ran")
        wait_for(
            lambda: len(_status(team.alice, d, "nightly").get("waiters", [])) == 1, what="queued"
        )
        assert _status(team.alice, d, "nightly")["waiters"][0]["user"] == team.bob.name
        # Nobody may stop another member's job...
        r = team.bob.run("stop", *ld, "-n", "nightly", "--timeout", "3s")
        assert r.returncode == 4, r.stderr
        assert r.stderr.startswith("singlerun: cannot stop default/nightly: not permitted")
        assert r.stderr.count("\n") == 1
        # ...but its owner may, and the member waiting in the queue goes next.
        r = team.alice.run("stop", *ld, "-n", "nightly")
        assert r.returncode == 0, r.stderr
        out, err = waiter.communicate(timeout=15)
        assert waiter.returncode == 0 and out == "bob ran\n", err
        holder.communicate(timeout=10)
        # Both members' runs are in the history each of them reads.
        for user in (team.alice, team.bob):
            r = user.run("history", "--json", *ld, "-n", "nightly")
            assert r.returncode == 0, r.stderr
            outcomes = sorted(run["outcome"] for run in json.loads(r.stdout))
            assert outcomes == ["killed", "ok"], r.stdout
    finally:
        _stop_all(holder, *([waiter] if waiter else []))
    # Every file either member created is group read-write and private to the group,
    # although both ran with umask 077.
    created = [p for p in d.rglob("*")]
    assert any(p.name.endswith(".lock") for p in created)
    assert any(p.name == "history.log" for p in created)
    for p in created:
        mode = p.lstat().st_mode
        assert mode & 0o007 == 0, (p, oct(mode))
        assert mode & 0o060 == 0o060, (p, oct(mode))
        assert p.lstat().st_gid == team.gid, p


def test_the_ledger_and_its_journal_are_shared_too(team):
    d = _group_dir(team, "ledger")
    ld = ("--lock-dir", str(d))
    # Enough runs by alice to fold the journal into the ledger, then a run by bob.
    big = "x" * 4000
    for _ in range(20):
        assert team.alice.run(*ld, "-n", "k", "--", "true", big).returncode == 0
    assert (d / "history.db").exists()
    assert team.bob.run(*ld, "-n", "k", "--", "true").returncode == 0
    r = team.bob.run("history", *ld, "-n", "k", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 21, r.stderr
    for p in d.iterdir():
        assert p.stat().st_mode & 0o067 == 0o060, (p, oct(p.stat().st_mode))


def test_someone_outside_the_group_is_refused_with_the_recipe(team):
    d = _group_dir(team, "closed")
    r = team.carol.run("--lock-dir", str(d), "-n", "k", "--", "true")
    assert r.returncode == 125
    assert r.stderr.startswith("singlerun: ") and r.stderr.count("\n") == 1, r.stderr


def test_a_sticky_world_writable_directory_is_refused_across_users_with_the_recipe(team):
    d = team.base / "sticky"
    d.mkdir()
    d.chmod(0o1777)
    holder = team.alice.start("--lock-dir", str(d), "-n", "k", "--", "sleep", "30")
    try:
        wait_for(lambda: _status(team.alice, d, "k").get("state") == "running", what="held")
        r = team.bob.run("--lock-dir", str(d), "-n", "k", "--", "true")
        assert r.returncode == 125, r.stderr
        assert r.stderr.count("\n") == 1 and "Permission denied" not in r.stderr, r.stderr
        assert "setgid group directory: install -d -m 2770 -g GROUP DIR" in r.stderr
    finally:
        _stop_all(holder)


def test_the_private_default_directory_stays_private_whatever_the_umask(team):
    default = Path(f"/tmp/singlerun-{team.alice.uid}")
    shutil.rmtree(default, ignore_errors=True)
    try:
        cmd = team.alice.cmd(
            "-n", "k", "--", "sh", "-c", "ls -la /tmp/singlerun-$(id -u)", umask="000"
        )
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]}
        )
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(default.stat().st_mode) == 0o700
        files = list(default.iterdir())
        assert files
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
        assert ".rec" in r.stdout and "-rw-------" in r.stdout  # the record, while it ran
        assert "-rw-r" not in r.stdout
    finally:
        shutil.rmtree(default, ignore_errors=True)


def test_a_record_forged_by_a_group_member_is_not_acted_on(team):
    d = _group_dir(team, "forged")
    victim = subprocess.Popen(["sleep", "60"])  # root's process, which alice may not signal
    lock = d / "default.forged.lock"
    locker = subprocess.Popen(
        ["setpriv", f"--reuid={team.alice.uid}", f"--regid={team.alice.gid}", "--init-groups",
         "flock", str(lock), "sleep", "60"]
    )  # fmt: skip
    try:
        wait_for(lambda: lock.exists(), what="lock file")
        started = psutil.Process(victim.pid).create_time()
        forged = {
            "job_id": "FORGED", "group": "default", "name": "forged", "pid": victim.pid,
            "pid_started": started, "child_pid": victim.pid, "child_started": started,
            "host": os.uname().nodename, "user": "root", "started_at": time.time(),
        }  # fmt: skip
        body = f"singlerun-record 1\n{json.dumps(forged)}\n"
        write = f"umask 007; printf '%s' '{body}' > {d}/default.forged.rec"
        subprocess.run(
            ["setpriv", f"--reuid={team.alice.uid}", f"--regid={team.alice.gid}",
             "--init-groups", "sh", "-c", write], check=True,
        )  # fmt: skip
        wait_for(lambda: _status(team.alice, d, "forged").get("state") == "running", what="held")
        # Root's stop must not be steered into killing root's own process.
        r = subprocess.run(
            [*SINGLERUN, "stop", "--lock-dir", str(d), "-n", "forged", "--timeout", "3s"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 1, r.stderr
        assert f"the record file belongs to uid {team.alice.uid}" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
        assert victim.poll() is None
        r = subprocess.run(
            [*SINGLERUN, "--lock-dir", str(d), "-n", "forged", "--replace", "--", "true"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 75, r.stderr
        assert victim.poll() is None
    finally:
        for p in (victim, locker):
            p.kill()
            p.wait()


# Issue 25: a member who rewrites the shared ledger must not make another member's `status`,
# `history` or finishing run hang. ENDLESS never ends; the ledger gives up after 3 s.
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
ENDLESS_VIEW = f"""
DROP TABLE runs;
CREATE VIEW runs AS {ENDLESS}
SELECT 'j' || x AS job_id, 'default' AS "group", 'k' AS name, 'h' AS host, 1 AS pid,
  x AS started_at, x AS ended_at, 0 AS exit_status, 'ok' AS outcome, '[]' AS command,
  1 AS attempt, '' AS run_id, '' AS invocation_id, '' AS stopped_by FROM c;
"""
ENDLESS_TRIGGER = f"""
CREATE TRIGGER endless BEFORE INSERT ON runs BEGIN
  SELECT count(*) FROM ({ENDLESS} SELECT x FROM c);
END;
"""
BOUND = 3.0  # ledger.BOUND
BIG = "x" * 4000  # a journal line of ~4 kB: 16 runs fill the journal to its fold


def _sql_as(user: User, db: Path, script: str) -> None:
    import sys

    code = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(sys.argv[2])"
    cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups"]
    subprocess.run([*cmd, sys.executable, "-c", code, str(db), script], check=True, timeout=30)


def _ledger_with_runs(team: Team, name: str) -> Path:
    d = _group_dir(team, name)
    for _ in range(20):
        assert team.alice.run("--lock-dir", str(d), "-n", "k", "--", "true", BIG).returncode == 0
    assert (d / "history.db").exists()
    return d


def _timed(user: User, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    r = user.run(*args)
    return r, time.monotonic() - t0


def test_status_and_history_answer_whatever_the_ledger_holds(team):
    d = _ledger_with_runs(team, "endless-view")
    _sql_as(team.bob, d / "history.db", ENDLESS_VIEW)
    holder = team.alice.start("--lock-dir", str(d), "-n", "k", "--", "sleep", "30")
    try:
        wait_for(lambda: _status(team.alice, d, "k").get("state") == "running", 30, "held")
        for fmt in ([], ["--json"]):
            r, took = _timed(team.alice, "status", "--lock-dir", str(d), *fmt)
            assert r.returncode == 0, r.stderr
            assert took < BOUND + 5, took
            lines = r.stderr.splitlines()
            assert len(lines) == 1, r.stderr
            assert lines[0].startswith("singlerun: warning: cannot read the run history: gave")
            assert "showing no last runs" in lines[0]
            if fmt:
                (entry,) = json.loads(r.stdout)
                assert entry["state"] == "running" and entry["last"] is None
            else:
                assert "default/k" in r.stdout and "running" in r.stdout
        r, took = _timed(team.alice, "history", "--lock-dir", str(d))
        assert r.returncode == 125 and took < BOUND + 5, (r.returncode, took)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("singlerun: "), r.stderr
        assert "gave up after 3 s" in r.stderr
    finally:
        _stop_all(holder)


def test_a_finishing_run_does_not_wait_on_an_endless_trigger(team):
    d = _ledger_with_runs(team, "endless-trigger")
    _sql_as(team.bob, d / "history.db", ENDLESS_TRIGGER)
    ld = ("--lock-dir", str(d))
    folds = 0
    for _ in range(20):  # until this run's row fills the journal and it folds the ledger
        r, took = _timed(team.alice, *ld, "-n", "k", "--", "sh", "-c", "exit 3", "sh", BIG)
        assert r.returncode == 3, r.stderr  # the job's own status, whatever the ledger does
        assert took < BOUND + 5, took
        if r.stderr:
            folds += 1
            assert r.stderr.count("\n") == 1, r.stderr
            assert r.stderr.startswith("singlerun: warning: cannot write the run history"), r
            assert "the run itself is unaffected" in r.stderr
            break
    assert folds == 1
    # Nothing was lost: the rows wait in the journal, and `history` still lists them.
    r = team.bob.run("history", *ld, "--json", "-n", "k")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) > 20


def test_root_may_read_a_users_private_directory_but_not_write_to_it(team):
    """Issue 20: `sudo singlerun status --lock-dir /tmp/singlerun-<uid>` and `history` were
    refused although they only read. root reads; a run would leave root-owned files behind
    in the user's directory, so it is still refused."""
    d = team.base / "alice-own"
    d.mkdir(mode=0o700)
    os.chown(d, team.alice.uid, team.alice.gid)  # as /tmp/singlerun-<uid> is
    ld = ("--lock-dir", str(d))
    assert team.alice.run(*ld, "-n", "done", "--", "true").returncode == 0
    holder = team.alice.start(*ld, "-n", "k", "--", "sleep", "30")
    try:
        wait_for(lambda: _status(team.alice, d, "k").get("state") == "running", 30, "held")
        assert d.stat().st_uid == team.alice.uid and stat.S_IMODE(d.stat().st_mode) == 0o700
        before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
        root = [*SINGLERUN]
        r = subprocess.run([*root, "status", *ld, "--json"], capture_output=True, text=True,
                           env=env, timeout=30)  # fmt: skip
        assert r.returncode == 0, r.stderr
        states = {e["name"]: e["state"] for e in json.loads(r.stdout)}
        assert states == {"done": "idle", "k": "running"}, states
        r = subprocess.run([*root, "history", *ld], capture_output=True, text=True, env=env)
        assert r.returncode == 0 and "default/done" in r.stdout, r.stderr
        r = subprocess.run([*root, *ld, "-n", "x", "--", "true"], capture_output=True, text=True,
                           env=env)  # fmt: skip
        assert r.returncode == 125 and "owned by uid" in r.stderr, r.stderr
        assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before
        assert all(p.stat().st_uid == team.alice.uid for p in d.iterdir())
    finally:
        _stop_all(holder)
