"""Lock stores: where a key's slots, holder records and waiters live.

The runner talks to a store only through the `Store` protocol (protocol.py) and gets one
from `open_store`, so a network store (leases renewed by TTL, fencing tokens) fits beside
the file store without touching the runner. What every run needs (its Lease) is defined
here; the protocol and the inspection types load only where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.record import Record
    from singlerun.store.protocol import Store


@dataclass(frozen=True)
class Reclaimed:
    """What a dead run left behind: its record, or None if the record was unreadable."""

    record: Record | None


@dataclass
class Lease:
    key: JobKey
    slot: int
    token: str  # identifies this grant; a fencing token on network stores
    ttl: float | None  # None: held by a kernel lock, nothing to renew
    job_fd: int | None  # a descriptor the job may inherit to share the lock, if the store has one
    reclaimed: Reclaimed | None
    handle: Any  # store-private state
    granted: float = 0.0  # monotonic time just before the grant was asked for (leases)


def open_store(
    lock_dir: str | None,
    backend: str | None = None,
    lease_ttl: float = 30.0,
    *,
    read_only: bool = False,
) -> Store:
    """The store the options name: a --backend URL, else the lock directory (checked,
    created if missing). A bad URL is a UsageError; an unreachable server a StoreError.
    `read_only`: for commands that only read (lockdir.LockDir)."""
    if backend:
        from singlerun.store.postgres.url import is_postgres

        if is_postgres(backend):
            from singlerun.store.postgres import PostgresStore
            from singlerun.store.postgres.url import parse as parse_postgres

            return PostgresStore(parse_postgres(backend), lease_ttl)
        from singlerun.store.redis.url import parse

        url = parse(backend)
        from singlerun.store.redis import RedisStore

        return RedisStore(url, lease_ttl)
    from singlerun import lockdir
    from singlerun.store.files import FileStore

    path = lock_dir or lockdir.default_lock_dir()
    return FileStore(lockdir.LockDir(path, read_only=read_only))
