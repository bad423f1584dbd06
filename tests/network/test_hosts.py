"""Across hosts: each "host" is its own UTS namespace (a different host name, as root) with
its own lock directory; they share only the Redis server."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import PRINT_SIGNALS, SINGLERUN, read_line, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)"
)


def on_host(rr, host, *args, **kw):
    """singlerun started on `host` (a new UTS namespace named so)."""
    argv = [
        "unshare",
        "--uts",
        "sh",
        "-c",
        f'hostname {host} && exec "$@"',
        "sh",
        *SINGLERUN,
        *args,
    ]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    env = {**rr.env, "SINGLERUN_LOCK_DIR": str(rr.lock_dir / host)}
    return subprocess.Popen(argv, env=env, text=True, **kw)


def holder_on(rr, host, name, *extra):
    proc = on_host(rr, host, "-n", name, *extra, "--", *PRINT_SIGNALS, "TERM")
    line = read_line(proc)
    assert line.startswith("ready"), line
    return proc


def test_status_from_another_host_names_the_holders_host(rr):
    holder = holder_on(rr, "hosta", "k")
    r = rr.run("status", "--json", "-n", "k")
    (entry,) = json.loads(r.stdout)
    assert (entry["state"], entry["host"]) == ("running", "hosta")
    r = rr.run("-n", "k", "--", "true")
    assert r.returncode == 75 and "; on hosta)" in r.stderr
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(10) == 0


def test_stop_and_replace_a_job_on_another_host(rr):
    holder = holder_on(rr, "hosta", "s")
    t0 = time.monotonic()
    r = rr.run("stop", "-n", "s", "--timeout", "15s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("stopped default/s")
    assert time.monotonic() - t0 < 10
    assert holder.wait(10) == 0  # its job handled SIGTERM, sent by its own singlerun
    assert "TERM" in holder.stdout.read()
    holder = holder_on(rr, "hosta", "s")
    r = rr.run("-n", "s", "--replace", "--", "echo", "replaced it")
    assert (r.returncode, r.stdout) == (0, "replaced it\n"), r.stderr
    holder.wait(10)
    outcomes = [row["outcome"] for row in json.loads(rr.run("history", "--json", "-n", "s").stdout)]
    assert outcomes[:2] == ["ok", "replaced"]


def test_waiters_on_two_hosts_run_in_arrival_order(rr, tmp_path):
    order = tmp_path / "order"
    holder = holder_on(rr, "hosta", "q")
    waiters = []
    for i, host in enumerate(["hostb", "hostc", "hostb", "hostc"]):
        waiters.append(
            on_host(rr, host, "-n", "q", "--wait", "--", "sh", "-c", f"echo {i} >> {order}")
        )
        wait_for(
            lambda n=i + 1: (
                len(json.loads(rr.run("status", "--json", "-n", "q").stdout)[0]["waiters"]) == n
            ),
            what="queued",
        )
    holder.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert [w.wait(20) for w in waiters] == [0, 0, 0, 0]
    assert order.read_text().split() == ["0", "1", "2", "3"]
    assert time.monotonic() - t0 < 8  # woken by notification, not a TTL/3 poll each


def test_a_waiter_whose_host_dies_leaves_the_queue_within_a_ttl(rr, tmp_path):
    holder = holder_on(rr, "hosta", "d")
    dead = on_host(rr, "hostb", "-n", "d", "--wait", "--lease-ttl", "2s", "--", "true")
    wait_for(
        lambda: json.loads(rr.run("status", "--json", "-n", "d").stdout)[0]["waiters"],
        what="queued",
    )
    dead.kill()
    dead.wait()
    wait_for(
        lambda: not json.loads(rr.run("status", "--json", "-n", "d").stdout)[0]["waiters"],
        timeout=6,
        what="dead waiter gone",
    )
    holder.send_signal(signal.SIGTERM)
    holder.wait(10)
