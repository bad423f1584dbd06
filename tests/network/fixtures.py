"""The network stores' servers (servers.py), one per kind, and the real singlerun pointed at
one of them with a namespace of its own per test (a key prefix, a schema). A pytest plugin
(tests/conftest.py loads it): tests/network and the contract suite (tests/contract) use it.

Every test that takes `rr` runs against each backend (the `backend` parameter); a test that
asks for `redis_server`, `prefix` or `redis_proxy` is about Redis alone, one that asks for
`postgres_server` about PostgreSQL alone."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.servers import INITDB, PG_CTL, REDIS_SERVER, PostgresServer, RedisServer
from tests.conftest import Singlerun

CI = os.environ.get("CI") == "true"
if CI and REDIS_SERVER is None:
    raise RuntimeError("redis-server is missing: .ci/run installs it (apt redis-server)")
if CI and (PG_CTL is None or INITDB is None):
    raise RuntimeError("PostgreSQL is missing: .ci/run installs it (apt postgresql)")

_REDIS_ONLY = {"redis_server", "prefix"}
_POSTGRES_ONLY = {"postgres_server"}


def available(kind: str) -> bool:
    try:
        if kind == "redis":
            import redis  # noqa: F401

            return REDIS_SERVER is not None
        import psycopg  # noqa: F401

        return PG_CTL is not None and INITDB is not None
    except ImportError:
        return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    names = set(metafunc.fixturenames)
    kinds = ["redis", "postgres"]
    if names & _REDIS_ONLY:
        kinds = ["redis"]
    elif names & _POSTGRES_ONLY:
        kinds = ["postgres"]
    params = [
        pytest.param(k, marks=pytest.mark.skipif(not available(k), reason=f"no {k} here"))
        for k in kinds
    ]
    metafunc.parametrize("backend", params, ids=kinds)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="singlerun-pg-"))
    server = PostgresServer(workdir)
    yield server
    server.stop()
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def server(backend: str, request: pytest.FixtureRequest) -> Any:
    """The backend's server, running and not paused."""
    return start(request.getfixturevalue(f"{backend}_server"))


@pytest.fixture
def ns() -> str:
    """This test's namespace on the server: a key prefix (Redis), a schema (PostgreSQL)."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def prefix(ns: str) -> str:
    return f"{ns}:"


def start(server: Any) -> Any:
    """The server, running and not paused."""
    if not server.running():
        server.start()
    server.resume()
    return server


@pytest.fixture
def rr(server: Any, lock_dir: Path, ns: str) -> Singlerun:
    """singlerun with SINGLERUN_BACKEND set to the test's server and namespace."""
    sr = Singlerun(lock_dir)
    sr.env["SINGLERUN_BACKEND"] = server.url(ns)
    return sr
