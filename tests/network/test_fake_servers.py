"""A server that trickles or floods (issue 18.6): a fake Redis on loopback that answers
every request a byte at a time, without end, or with a reply announced at 768 MiB. Each
exchange has a whole-reply deadline and a size bound: one `singlerun: ` line and 125, soon,
in little memory. Before, the trickle held singlerun without limit and the flood made it
allocate the 768 MiB."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from tests.conftest import SINGLERUN

pytest.importorskip("redis")


class FakeRedis:
    """Answers each request with `reply(conn)`; runs until closed."""

    def __init__(self, reply) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply, self.closed = reply, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed meanwhile (close() does not wait for this thread)
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the first request, whatever it is
                self.reply(conn, self.closed)
            except OSError:
                pass

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def _trickle(conn: socket.socket, closed: threading.Event) -> None:
    conn.sendall(b"+")
    while not closed.is_set():  # a status line that never ends
        conn.sendall(b"O")
        time.sleep(0.3)


def _flood(conn: socket.socket, closed: threading.Event) -> None:
    conn.sendall(b"$805306368\r\n")  # 768 MiB announced, and sent as fast as it goes
    chunk = b"x" * (1 << 20)
    for _ in range(768):
        if closed.is_set():
            return
        conn.sendall(chunk)


# Runs argv, then prints its peak RSS (KiB) on the last line of stderr: the only child, so
# RUSAGE_CHILDREN is singlerun's own (and its own children's).
MEASURED = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def _run(port: int, tmp_path) -> tuple[int, list[str], float, int]:
    """(exit status, stderr lines, seconds, peak RSS in KiB) of a run against the server."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    env["SINGLERUN_LOCK_DIR"] = str(tmp_path)
    url = f"redis://127.0.0.1:{port}/0?connect_timeout=2s"
    t0 = time.monotonic()
    argv = [sys.executable, "-c", MEASURED, *SINGLERUN, "--backend", url, "-n", "k", "--", "true"]
    try:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("singlerun still waiting on the server after 30 s")
    *lines, peak = r.stderr.splitlines()
    return r.returncode, lines, time.monotonic() - t0, int(peak)


@pytest.mark.parametrize("reply", [_trickle, _flood], ids=["trickle", "flood"])
def test_a_server_that_trickles_or_floods_is_unreachable_soon(reply, tmp_path):
    server = FakeRedis(reply)
    try:
        code, lines, elapsed, peak = _run(server.port, tmp_path)
    finally:
        server.close()
    assert code == 125, lines
    assert len(lines) == 1 and lines[0].startswith("singlerun: cannot reach redis://127.0.0.1:")
    assert elapsed < 10  # 2 s of connect_timeout, and a generous margin
    assert peak < 300 << 10, peak  # KiB: far below the 768 MiB announced


class Malformed(FakeRedis):
    """Shakes hands as a Redis 7 would (HELLO 3, CLIENT, PING), then answers every other
    request (the scripts, the history) with one reply of the wrong shape."""

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    up = data.upper()
                    if b"HELLO" in up:
                        conn.sendall(b"%1\r\n+proto\r\n:3\r\n")
                    elif b"CLIENT" in up:
                        conn.sendall(b"+OK\r\n" * up.count(b"CLIENT"))
                    elif b"PING" in up:
                        conn.sendall(b"+PONG\r\n")
                    else:
                        conn.sendall(self.reply * max(1, data.count(b"*")))
            except OSError:
                pass


@pytest.mark.parametrize(
    "reply",
    [b":7\r\n", b"*1\r\n:1\r\n", b"$3\r\nabc\r\n", b"*3\r\n$1\r\nx\r\n:5\r\n*0\r\n", b"_\r\n"],
    ids=["integer", "short-array", "string", "wrong-types", "null"],
)
def test_replies_of_the_wrong_shape_are_one_line_never_a_crash(reply, tmp_path):
    """Issue 18: before, each of these made a run, `status` or `history` an internal error
    (a traceback's last line, AttributeError, TypeError, ValueError)."""
    server = Malformed(reply)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLERUN_")}
    env["SINGLERUN_LOCK_DIR"] = str(tmp_path)
    url = f"redis://127.0.0.1:{server.port}/0?connect_timeout=2s"
    try:
        for args in (["-n", "k", "--", "true"], ["status"], ["history"], ["--wait", "-n", "k",
                     "--wait-timeout", "1s", "--", "true"]):  # fmt: skip
            r = subprocess.run(
                [*SINGLERUN, "--backend", url, *args],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            # 125, or (status, a null for the history) no keys and one warning
            assert r.returncode in (125, 0), (args, r.stderr)
            assert r.stderr.count("\n") == 1 and "internal error" not in r.stderr, (args, r.stderr)
            assert r.stderr.startswith(("singlerun: cannot ", "singlerun: warning: cannot "))
    finally:
        server.close()
