"""A connection to Redis for the store: redis-py set up for leases, and the first round
trip, whose failures each get their one line."""

from __future__ import annotations

from typing import Any

from singlerun.errors import StoreError
from singlerun.store.base import client, failing_as
from singlerun.store.redis import bounded
from singlerun.store.redis.url import RedisURL

# What redis-py (or singlerun reading a reply) raises on a reply of an unexpected shape:
# a server, or whoever answers on its port, is not trusted (issue 18).
MALFORMED = (AttributeError, TypeError, ValueError, IndexError, KeyError, UnicodeError)
_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "invalid username-password", "HELLO")


def connect(url: RedisURL, ttl: float) -> tuple[Any, type[Exception], tuple[type[Exception], ...]]:
    """(a redis.Redis that answered a PING, redis-py's base error class, the errors of a
    connection that dropped or timed out)."""
    redis = client("redis", "Redis", "redis-py", "redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Far below the TTL: a stuck call must not outlast the lease (redis-py's own default
    # retries would); retrying is the ticker's business, bounded by the lease.
    db = redis.Redis(
        host=url.host or "localhost",
        port=url.port,
        unix_socket_path=url.path or None,
        db=url.db,
        username=url.username,
        password=url.password,
        ssl=url.scheme == "rediss",
        # Said, not left to the client's defaults: redis-py 5 checks no host name.
        ssl_cert_reqs="required",
        ssl_check_hostname=url.scheme == "rediss",
        **url.tls_files,
        socket_connect_timeout=url.connect_timeout,
        socket_timeout=max(0.2, min(ttl / 3, url.connect_timeout)),
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        client_name="singlerun",
        # RESP2: redis-py 8 would open each connection with HELLO 3, a round trip that buys
        # nothing here (scripts answer in arrays either way; issue 21 counts requests).
        protocol=2,
    )
    bounded.bound(db, redis, reply=db.connection_pool.connection_kwargs["socket_timeout"],
                  connect=url.connect_timeout)  # fmt: skip
    with failing_as(url.location, "reach", redis.RedisError, malformed=MALFORMED):
        try:
            db.ping()
        except (redis.AuthenticationError, redis.ResponseError) as exc:
            # WRONGPASS, NOAUTH and a server that wants HELLO: say what it is, never how.
            auth = isinstance(exc, redis.AuthenticationError)
            if auth or str(exc).startswith(_AUTH_REPLIES):
                who = f"user {url.username}" if url.username else "the default user"
                raise StoreError(
                    f"authentication failed for {who} on {url.location} (check the "
                    "password in the URL or REDISCLI_AUTH)"
                ) from None
            raise
    return db, redis.RedisError, (redis.ConnectionError, redis.TimeoutError)


def sleep(db: Any, wake: str, seconds: float) -> None:
    """Block until a wake-up is pushed on the list `wake`, or `seconds`: BLPOP on the
    connection that asks (a subscription took a second connection with its own handshake,
    and a request more per wake-up: issue 21). A server that does not answer in time is a
    dropped connection."""
    from redis.exceptions import TimeoutError as Late

    pool = db.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("BLPOP", wake, f"{max(seconds, 0.01):.3f}")
        if not conn.can_read(timeout=seconds + pool.connection_kwargs["socket_timeout"]):
            raise Late(f"no answer to a wait of {seconds:.1f}s")
        conn.read_response()
    except BaseException:
        conn.disconnect()  # its reply may still come, and be read as the next request's
        raise
    finally:
        pool.release(conn)
