"""The contract suite runs each test on every store: the lock directory, Redis and
PostgreSQL (`store`), through the real program (`st`). What only one store does is tested
beside it (tests/cli for the lock directory, tests/network for the servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Singlerun
from tests.network.fixtures import available, start

STORES = ("files", "redis", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" in metafunc.fixturenames:
        params = [
            pytest.param(s, marks=pytest.mark.skipif(s != "files" and not available(s),
                                                     reason=f"no {s} here"))
            for s in STORES
        ]  # fmt: skip
        metafunc.parametrize("store", params)


@pytest.fixture
def st(store: str, lock_dir: Path, ns: str, request: pytest.FixtureRequest) -> Singlerun:
    """singlerun on the test's store (the network ones in a namespace of their own)."""
    sr = Singlerun(lock_dir)
    if store != "files":
        server = start(request.getfixturevalue(f"{store}_server"))
        sr.env["SINGLERUN_BACKEND"] = server.url(ns)
    return sr
