"""--backend URLs: the scheme table picks the store, each store's parser checks the rest,
without importing a client library or touching a server."""

import pytest

from singlerun.errors import UsageError
from singlerun.store import STORES, open_store
from singlerun.store.postgres.url import parse as postgres_url
from singlerun.store.redis.url import parse as redis_url


def test_every_scheme_has_a_store():
    assert set(STORES) == {"redis", "rediss", "unix", "postgresql", "postgres"}


@pytest.mark.parametrize("url", ["ftp://h/", "localhost:6379", "redis", "etcd://h:2379"])
def test_an_unknown_scheme_is_a_usage_error_that_lists_the_known_ones(url):
    with pytest.raises(UsageError) as err:
        open_store(None, url)
    assert "unknown scheme" in err.value.message
    assert "redis://, rediss://, unix://, postgresql://, postgres://" in err.value.message


def test_redis_urls(monkeypatch):
    monkeypatch.delenv("REDISCLI_AUTH", raising=False)
    u = redis_url("redis://me:s%40cret@locks:6380/2?prefix=ops:&connect_timeout=2s")
    assert (u.host, u.port, u.db, u.username, u.password, u.prefix, u.connect_timeout) == (
        "locks", 6380, 2, "me", "s@cret", "ops:", 2.0,
    )  # fmt: skip
    assert "cret" not in u.location and u.location == "redis://me@locks:6380/2"
    s = redis_url("unix:///run/redis.sock?db=3")
    assert (s.path, s.db, s.location) == ("/run/redis.sock", 3, "unix:///run/redis.sock?db=3")
    monkeypatch.setenv("REDISCLI_AUTH", "fromenv")
    assert redis_url("rediss://locks/0").password == "fromenv"


@pytest.mark.parametrize(
    "url, why",
    [
        ("redis:/locks:6379/0", "no host"),
        ("redis://locks:0/0", "port"),
        ("redis://locks/x", "database"),
        ("redis://locks/99999999999", "database"),
        ("redis://locks/0?db=1", "path"),
        ("redis://locks/0?color=red", "unknown parameter"),
        ("redis://locks/0?connect_timeout=0", "connect_timeout"),
        ("redis://locks/0?prefix=", "prefix"),
        ("unix://", "socket"),
        ("redis://" + "a" * 64 + "/0", "host name"),
    ],
)
def test_bad_redis_urls(url, why):
    with pytest.raises(UsageError) as err:
        redis_url(url)
    assert err.value.message.startswith("invalid --backend URL: ") and why in err.value.message


def test_postgres_urls():
    u = postgres_url("postgresql://me:pw@db:5433/ops?schema=locks&sslmode=require")
    assert u.schema == "locks" and "pw" not in u.location
    assert u.location == "postgresql://me@db:5433/ops?schema=locks"
    assert "connect_timeout=5" in u.conninfo and "schema" not in u.conninfo
    assert postgres_url("postgres:///ops?host=/run/postgresql").schema == "singlerun"


@pytest.mark.parametrize(
    "url, why",
    [
        ("postgresql://db/ops?schema=Bad-Name", "identifier"),
        ("postgresql://db/ops?schema=public", "not singlerun's"),
        ("postgresql://db/ops?schema=pg_x", "not singlerun's"),
        ("postgresql://db/ops?connect_timeout=0", "connect_timeout"),
        ("postgresql://db:99999/ops", "out of range"),
    ],
)
def test_bad_postgres_urls(url, why):
    with pytest.raises(UsageError) as err:
        postgres_url(url)
    assert why in err.value.message
