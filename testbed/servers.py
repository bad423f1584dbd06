"""Real servers for the network stores, each on a free loopback port in a temporary
directory, that tests can pause, kill and restart: redis-server, and PostgreSQL made with
initdb + pg_ctl (as the `postgres` user when the tests run as root: it refuses root)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

REDIS_SERVER = shutil.which("redis-server")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))  # not on PATH there
    return debian[-1] if debian else None


PG_CTL, INITDB = _pg_bin("pg_ctl"), _pg_bin("initdb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _freeze(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


class RedisServer:
    """redis-server without persistence: a restart loses every key, as after a crash."""

    kind = "redis"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        import redis

        argv = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(self.proc.pid)] if self.running() else []  # type: ignore[union-attr]

    def client(self):  # redis is imported lazily
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)

    def url(self, ns: str, port: int | None = None) -> str:
        prefix = ns if ns.endswith(":") else f"{ns}:"
        return f"redis://127.0.0.1:{port or self.port}/0?prefix={prefix}"

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()

    def drop_clients(self) -> int:
        """CLIENT KILL of every client but ours (a proxy's idle timeout, an operator)."""
        return int(self.client().client_kill_filter(skipme=True))

    def restart(self) -> None:
        """Kill it and start it again on the same port, every key lost."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.running():
            self.kill()


class PostgresServer:
    """A throwaway PostgreSQL cluster; `restart` is a crash (SIGKILL of every process) and a
    start, so every session and its locks are gone while the data stays."""

    kind = "postgres"

    def __init__(self, workdir: Path, options: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.options = options  # more `-c name=value` settings for the server
        self.data = workdir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(INITDB, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def _run(self, *argv: str | None) -> None:
        cmd = [*self.as_user, *(a for a in argv if a)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=300 -c full_page_writes=off " + self.options
        )
        log = str(self.workdir / "log")
        self._run(PG_CTL, "-D", str(self.data), "-o", opts, "-l", log, "-w", "start")

    def postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
            return None

    def processes(self) -> list[psutil.Process]:
        """The postmaster and its children (the backends among them)."""
        pm = self.postmaster()
        return [] if pm is None else [pm, *pm.children()]

    def running(self) -> bool:
        pm = self.postmaster()
        return pm is not None and pm.status() != psutil.STATUS_ZOMBIE

    def url(self, ns: str, port: int | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/postgres?schema={ns}"

    def sql(self, query: str, *args: object) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url("x").split("?")[0], autocommit=True) as conn:
            cur = conn.execute(query, args or None)
            return cur.fetchall() if cur.description else []

    def drop_clients(self) -> int:
        """pg_terminate_backend of every singlerun session."""
        return len(
            self.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'singlerun' AND pid <> pg_backend_pid()"
            )
        )

    def pause(self) -> None:
        _freeze(self.processes(), signal.SIGSTOP)

    def resume(self) -> None:
        _freeze(self.processes(), signal.SIGCONT)

    def kill(self) -> None:
        procs = self.processes()
        _freeze(procs, signal.SIGCONT)
        _freeze(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        for p in procs:  # their parent is gone: reaped by us, the subreaper, if at all
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.running():
            self.resume()
            self._run(PG_CTL, "-D", str(self.data), "-m", "immediate", "stop")
