"""redis-py connections with a whole-reply deadline and a size bound (docs/CONTRACT.md §6).

A server is not trusted. redis-py's socket timeout bounds each read, so a server that
trickles a reply, a byte at a time, holds singlerun for as long as it likes; and it
allocates whatever length a bulk reply announces. Here each reply (and the connection's
set-up, with its handshake and AUTH) must be complete within a deadline, and may not
exceed MAX_REPLY bytes: either is a dropped connection (redis.TimeoutError,
redis.ConnectionError), which a waiter retries and a holder counts as "could not ask".
redis-py offers neither; this is the smallest hook into it: a subclass of whichever
connection class it chose (TCP, TLS, Unix socket), set on the client's pool.
"""

from __future__ import annotations

from typing import Any

MAX_REPLY = 64 << 20  # bytes: a history batch or a queue listing is far below this

_active = [False]  # a deadline is running (connecting reads replies too): not another


def bound(db: Any, redis: Any, reply: float, connect: float) -> None:
    """Make every connection `db`'s pool creates from now on a bounded one: `reply` and
    `connect` are the seconds a reply and a connection's set-up may take, all told."""
    import time

    from singlerun.store.alarm import alarm_at

    base = db.connection_pool.connection_class

    def within(seconds: float, call: Any, *args: Any, **kwargs: Any) -> Any:
        if _active[0]:
            return call(*args, **kwargs)

        def late() -> BaseException:
            error: BaseException = redis.TimeoutError(f"no whole reply within {seconds:g}s")
            return error

        _active[0] = True
        try:
            with alarm_at(time.monotonic() + seconds, late):
                return call(*args, **kwargs)
        finally:
            _active[0] = False

    class Counting:
        """The connection's socket, counting what a reply brings."""

        def __init__(self, sock: Any) -> None:
            self._sock, self.got = sock, 0

        def _add(self, n: int) -> None:
            self.got += n
            if self.got > MAX_REPLY:
                raise redis.ConnectionError(f"a reply of over {MAX_REPLY >> 20} MiB")

        def recv(self, size: int, *args: Any) -> bytes:
            data: bytes = self._sock.recv(size, *args)
            self._add(len(data))
            return data

        def recv_into(self, buffer: Any, size: int = 0, *args: Any) -> int:
            n: int = self._sock.recv_into(buffer, size, *args)
            self._add(n)
            return n

        def __getattr__(self, name: str) -> Any:
            return getattr(self._sock, name)

    class Bounded(base):  # type: ignore[misc, valid-type]
        def _connect(self) -> Any:
            return Counting(super()._connect())

        def connect(self, *args: Any, **kwargs: Any) -> Any:
            return within(connect, super().connect, *args, **kwargs)

        def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:  # redis-py 6+
            return within(connect, super().connect_check_health, *args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            if isinstance(self._sock, Counting):
                self._sock.got = 0
            return within(reply, super().read_response, *args, **kwargs)

    db.connection_pool.connection_class = Bounded
