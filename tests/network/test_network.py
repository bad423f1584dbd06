"""Partitions between singlerun and its server: a proxy that cuts or black-holes the
connection, and contenders in separate network namespaces."""

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time

import psutil
import pytest

from tests.conftest import SINGLERUN, dead, wait_for
from tests.network.proxy import Proxy


@pytest.fixture
def proxy(server):
    p = Proxy(server.port)
    yield p
    p.close()


def test_blackholed_connection_stops_the_job_before_the_lease_expires(rr, server, proxy, ns):
    env = {"SINGLERUN_BACKEND": server.url(ns, port=proxy.port)}
    job = rr.start("-n", "bh", "--lease-ttl", "2s", "--", "sleep", "30", env=env)

    def sleeper():
        return [p for p in psutil.Process(job.pid).children() if p.name() == "sleep"]

    (sleeper,) = wait_for(sleeper, what="job started")
    proxy.blackhole()
    t0 = time.monotonic()

    def gone():
        try:
            return not sleeper.is_running() or sleeper.status() == "zombie"
        except psutil.NoSuchProcess:  # reaped between the two questions
            return True

    wait_for(gone, what="job killed")
    assert time.monotonic() - t0 < 2.0  # before the 2 s lease could lapse for others
    assert job.wait(15) == 125
    assert "was lost" in job.stderr.read()


def test_a_brief_cut(rr, server, proxy, ns):
    """Redis: a lease outlives a connection, so a brief cut is survived. PostgreSQL: the
    lock belongs to the session, so a cut connection is a lost lock: the job is stopped."""
    env = {"SINGLERUN_BACKEND": server.url(ns, port=proxy.port)}
    job = rr.start(
        "-n", "cut", "--lease-ttl", "4s", "--", "sh", "-c", "sleep 2.5; echo ok", env=env
    )
    wait_for(lambda: rr.run("status", "-n", "cut").returncode == 0, what="running")
    proxy.cut()
    time.sleep(0.8)
    proxy.heal()
    if server.kind == "redis":
        assert job.wait(10) == 0, job.stderr.read()
        assert job.stdout.read() == "ok\n"
    else:
        assert job.wait(10) == 125
        assert job.stdout.read() == ""
        assert "was lost" in job.stderr.read()


NETNS = os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.skipif(not NETNS, reason="network namespaces need root and ip(8)")
def test_contenders_in_separate_network_namespaces(rr, redis_server, prefix, tmp_path):
    """Two "hosts", each a network namespace joined to ours by a veth pair; Redis is reached
    at the host side's address (a private /30 that exists only inside this test)."""
    ns = [f"sr{os.getpid() % 10000}{i}" for i in range(2)]
    made = []
    try:
        for i, name in enumerate(ns):
            out, inner = f"vh{name}", f"vn{name}"
            cmds = [
                ["ip", "netns", "add", name],
                ["ip", "link", "add", out, "type", "veth", "peer", "name", inner],
                ["ip", "link", "set", inner, "netns", name],
                ["ip", "addr", "add", f"10.231.{i}.1/30", "dev", out],
                ["ip", "link", "set", out, "up"],
                ["ip", "-n", name, "addr", "add", f"10.231.{i}.2/30", "dev", inner],
                ["ip", "-n", name, "link", "set", inner, "up"],
                ["ip", "-n", name, "link", "set", "lo", "up"],
            ]
            for cmd in cmds:
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    pytest.skip(f"cannot create network namespaces here: {r.stderr.strip()}")
            made.append((name, out))
        # The test's own server listens on loopback only; a second one for the namespaces.
        port = redis_server.port
        srv = subprocess.Popen(
            [
                *("redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"),
                *("--bind", "10.231.0.1", "10.231.1.1", "--port", str(port + 1)),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            out_file = tmp_path / "order"
            procs = []
            for i, name in enumerate(ns):
                env = {**rr.env, "SINGLERUN_BACKEND": f"redis://10.231.{i}.1:{port + 1}/0"}
                env["SINGLERUN_LOCK_DIR"] = str(tmp_path / name)
                argv = ["ip", "netns", "exec", name, *SINGLERUN, "-n", "net", "--wait", "--"]
                argv += [
                    "sh",
                    "-c",
                    f"echo start {name} >> {out_file}; sleep 1; echo end {name} >> {out_file}",
                ]
                procs.append(subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True))
                if i == 0:  # the first holds the key before the second asks for it
                    wait_for(lambda: out_file.exists(), what="first job started")
            for p in procs:
                assert p.wait(30) == 0, p.stderr.read()
            lines = out_file.read_text().split("\n")
            assert lines[:4] == [f"start {ns[0]}", f"end {ns[0]}", f"start {ns[1]}", f"end {ns[1]}"]
        finally:
            srv.kill()
            srv.wait()
    finally:
        for name, out in made:
            subprocess.run(["ip", "link", "del", out], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: the next write to it blocks until it is read."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    for size in (4096, 1):  # writes of up to a page are all or nothing: then byte by byte
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(w, b"." * size)
    os.set_blocking(w, True)
    return r, w


def test_a_job_never_starts_once_its_lease_has_run_out(rr, server, tmp_path):
    """singlerun held up after its grant, before its job starts, for longer than the lease
    (here -v's "acquired" line blocks on a stderr pipe nobody reads, as a stalled log
    pipeline would; in the long chaos run, a SIGSTOP in that instant): the job must not
    start. Started, it would be killed only once its watchdog got the CPU, by then maybe
    beside the next holder's job: the chaos run saw that overlap."""
    ran = tmp_path / "ran"
    r, w = _full_pipe()
    try:
        late = rr.start("-v", "-n", "late", "--lease-ttl", "1s", "--", "touch", str(ran), stderr=w)
    finally:
        os.close(w)
    granted = wait_for(
        lambda: rr.run("status", "-n", "late").returncode == 0 and time.monotonic(),
        what="the key granted",
    )
    if server.kind == "redis":  # the lease lapses on the server
        wait_for(lambda: rr.run("status", "-n", "late").returncode != 0, what="the lease lapsed")
    else:  # a PostgreSQL session lock outlives it: the deadline is singlerun's own
        wait_for(lambda: time.monotonic() > granted + 1.5, what="the lease's time over")
    said: list[bytes] = []
    with os.fdopen(r, "rb") as pipe:
        reader = threading.Thread(target=lambda: said.append(pipe.read()))  # until EOF
        reader.start()
        code = late.wait(15)
        reader.join(15)
    assert not reader.is_alive(), "something singlerun started still holds its stderr"
    text = said[0].lstrip(b".").decode()
    assert code == 125, text
    assert "ran out before the job started" in text, text
    assert not ran.exists()


@pytest.mark.parametrize("fault", ["KILL", "STOP"])
def test_no_instant_of_a_job_without_its_watchdog(rr, server, proxy, ns, tmp_path, fault):
    """Issue 23's overlap: the job ran before its watchdog was armed (armed only after the
    record naming the job had been written to the server). A singlerun killed or frozen in
    that window left the job running unguarded past its lease, beside the next holder. The
    slow server makes the window wide; the job itself kills or freezes its singlerun the
    moment it runs, so the interleaving is the same on every run."""
    pidfile = tmp_path / "job.pid"
    proxy.delay = 0.1
    env = {"SINGLERUN_BACKEND": server.url(ns, port=proxy.port)}
    job = f"echo $$ > {pidfile}; kill -{fault} $PPID; exec sleep 30"
    holder = rr.start("-n", "w", "--lease-ttl", "3s", "--", "sh", "-c", job, env=env)
    try:
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30))
        t0 = time.monotonic()
        # The 3 s lease (granted before the job started) lapses for other hosts within 3 s.
        wait_for(lambda: dead(pid), timeout=5, what="the job killed by its watchdog")
        assert time.monotonic() - t0 < 3.0
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.send_signal(signal.SIGCONT)
    proxy.delay = 0
    assert holder.wait(15) == (-9 if fault == "KILL" else 125)
