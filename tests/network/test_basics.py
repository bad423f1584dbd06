"""The run path on a real server: lease, fencing token, release, history, URLs."""

import json
import time

from tests.conftest import stop, wait_for


def test_a_run_holds_a_lease_with_a_fencing_token(rr, redis_server, prefix):
    r = rr.run("-n", "k", "--", "sh", "-c", 'echo "$SINGLERUN_FENCING_TOKEN"')
    assert r.returncode == 0, r.stderr
    first = int(r.stdout)
    r = rr.run("-n", "k", "--", "sh", "-c", 'echo "$SINGLERUN_FENCING_TOKEN"')
    assert int(r.stdout) > first
    db = redis_server.client()
    assert db.exists(f"{prefix}{{default.k}}:fence")
    assert not db.keys(f"{prefix}{{default.k}}:lease:*")  # released


def test_fencing_token_increases_even_after_the_server_lost_its_data(rr, redis_server):
    token = lambda: int(rr.run("-n", "f", "--", "sh", "-c", "echo $SINGLERUN_FENCING_TOKEN").stdout)  # noqa: E731
    before = token()
    redis_server.restart()
    after = token()
    assert after > before


def test_status_history_and_json_through_the_server(rr):
    holder, _ = rr.start_holder("-n", "s", "-g", "g")
    r = rr.run("status", "--json", "-g", "g", "-n", "s")
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads(r.stdout)
    assert entry["state"] == "running" and entry["pid"] == holder.pid
    stop(holder)
    wait_for(lambda: rr.run("status", "-g", "g", "-n", "s").returncode == 3, what="idle")
    rows = json.loads(rr.run("history", "--json", "-g", "g").stdout)
    assert rows[0]["outcome"] == "ok" and rows[0]["name"] == "s"


def test_password_is_never_shown(rr, redis_server, prefix):
    db = redis_server.client()
    db.config_set("requirepass", "s3cret-pw")
    try:
        url = f"redis://:s3cret-pw@127.0.0.1:{redis_server.port}/0?prefix={prefix}"
        env = {"SINGLERUN_BACKEND": url}
        holder, _ = rr.start_holder("-n", "p", env=env)
        r = rr.run("-n", "p", "--", "true", env=env)
        assert r.returncode == 75 and "s3cret" not in r.stderr
        for args in (["status", "--json"], ["history"], ["status"]):
            out = rr.run(*args, env=env)
            assert out.returncode == 0 and "s3cret" not in out.stdout + out.stderr
        # From the environment, as redis-cli reads it; a wrong one is refused in one line.
        env2 = {"SINGLERUN_BACKEND": redis_server.url(prefix), "REDISCLI_AUTH": "s3cret-pw"}
        assert rr.run("status", env=env2).returncode == 0
        bad = {"SINGLERUN_BACKEND": redis_server.url(prefix), "REDISCLI_AUTH": "wrong"}
        r = rr.run("-n", "p2", "--", "true", env=bad)
        assert r.returncode == 125 and r.stderr.count("\n") == 1 and "wrong" not in r.stderr
        assert r.stderr.startswith("singlerun: authentication failed for the default user on ")
        nopw = {"SINGLERUN_BACKEND": redis_server.url(prefix)}  # issue 19: "HELLO must be…"
        r = rr.run("status", env=nopw)
        assert r.returncode == 125 and "authentication failed" in r.stderr, r.stderr
        stop(holder)
    finally:
        redis.Redis(port=redis_server.port, password="s3cret-pw").config_set("requirepass", "")


def test_bad_urls_are_usage_errors_and_unreachable_is_125(rr, redis_server):
    bad = ("redis://", "foo://x", "redis://h:notaport/0", "redis://h/x", "unix://")
    # Issue 18: port 0 silently meant 6379; the others were internal errors.
    bad += ("redis://127.0.0.1:0/0", "redis://h/²", f"redis://{'a' * 70}:6379/0")
    bad += ("redis://h/99999999999999999999",)
    for url in bad:
        r = rr.run("-n", "u", "--", "true", env={"SINGLERUN_BACKEND": url})
        assert r.returncode == 2 and r.stderr.startswith("singlerun: "), (url, r.stderr)
        assert r.stderr.count("\n") == 1
    port = free_port()
    t0 = time.monotonic()
    r = rr.run(
        "-n",
        "u",
        "--",
        "true",
        env={"SINGLERUN_BACKEND": f"redis://127.0.0.1:{port}/0?connect_timeout=2s"},
    )
    assert r.returncode == 125 and r.stderr.startswith("singlerun: cannot reach redis://")
    assert time.monotonic() - t0 < 10


import redis  # noqa: E402

from testbed.servers import free_port  # noqa: E402


def test_a_password_on_the_command_line_is_hidden_from_other_users(rr, redis_server, prefix):
    """Issue 18.3: /proc/PID/cmdline, readable by every user, showed the URL's password for
    singlerun and for its watchdog (a fork of it)."""
    import psutil

    db = redis_server.client()
    db.config_set("requirepass", "s3cret-pw")
    try:
        url = f"redis://:s3cret-pw@127.0.0.1:{redis_server.port}/0?prefix={prefix}"
        holder, job = rr.start_holder("--backend", url, "-n", "pw")
        me = psutil.Process(holder.pid)
        watchdog = [p for p in me.children() if p.pid != job]  # a fork: singlerun's argv
        assert len(watchdog) == 1 and watchdog[0].cmdline()[:3] == me.cmdline()[:3]
        for proc in (me, *me.children(recursive=True)):
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                assert b"s3cret" not in f.read(), proc
        with open(f"/proc/{holder.pid}/cmdline", "rb") as f:
            assert f"redis://:{'*' * 9}@127.0.0.1".encode() in f.read()
        assert rr.run("--backend", url, "-n", "pw", "--", "true").returncode == 75  # it works
        stop(holder)
    finally:
        redis.Redis(port=redis_server.port, password="s3cret-pw").config_set("requirepass", "")
