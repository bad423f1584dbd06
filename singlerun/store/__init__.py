"""Lock stores: where a key's slots, holder records and waiters live.

The runner and the subcommands talk to a store only through the `Store` protocol
(protocol.py) and get one from `open_store`. A store is a package below this one that
implements the primitives of `base.StoreBase`; a network store is also one row of
`STORES` (docs/ARCHITECTURE.md has the checklist for adding one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from singlerun.store.protocol import Store


def _redis(url: str, lease_ttl: float) -> Store:
    from singlerun.store.redis.store import RedisStore

    return RedisStore.open(url, lease_ttl)


def _postgres(url: str, lease_ttl: float) -> Store:
    from singlerun.store.postgres.store import PostgresStore

    return PostgresStore.open(url, lease_ttl)


# A --backend URL's scheme -> the store that opens it (imported only when named).
STORES: dict[str, Callable[[str, float], Store]] = {
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def open_store(
    lock_dir: str | None,
    backend: str | None = None,
    lease_ttl: float = 30.0,
    *,
    read_only: bool = False,
) -> Store:
    """The store the options name: a --backend URL, else the lock directory (checked,
    created if missing). A bad URL is a UsageError; an unreachable server a StoreError.
    `read_only`: for commands that only read (lockdir.LockDir). Use it in a `with` block:
    the store is closed on every way out."""
    if backend:
        head, colon, _ = backend.partition(":")
        opener = STORES.get(head.lower()) if colon else None
        if opener is None:
            from singlerun.errors import UsageError

            schemes = ", ".join(f"{s}://" for s in STORES)
            raise UsageError(
                f"invalid --backend URL: unknown scheme {head.lower() if colon else ''!r} "
                f"(use {schemes})"
            )
        return opener(backend, lease_ttl)
    from singlerun.store.files.lockdir import LockDir, default_lock_dir
    from singlerun.store.files.store import FileStore

    return FileStore(LockDir(lock_dir or default_lock_dir(), read_only=read_only))
