"""What the Redis store shows: INSPECT's replies as key states (holders, stale records,
waiters, runs adrift) for `status`, `stop` and `clean`, pipelined. Reads only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from singlerun.keys import JobKey
from singlerun.record import parse
from singlerun.store.protocol import KeyState


def state(stem: str, reply: list[Any]) -> KeyState:
    """A key's INSPECT reply (scripts.INSPECT) as its state; a reply of another shape
    raises TypeError or ValueError, which the store turns into one line."""
    _, held, _, stale, waiters, adrift = reply
    holders = [r for d in held if (r := parse(d))]
    found = KeyState(stem, JobKey.from_stem(stem), holders=holders)
    found.unrecorded = len(held) - len(holders)
    found.stale = [parse(d) for d in stale]
    found.waiters = [r for d in waiters if (r := parse(d))]
    found.adrift = [r for d in adrift if (r := parse(d))]
    return found.named()


def replies(client: Any, inspect: Any, bases: list[str], batch: int = 1000) -> Iterator[Any]:
    """INSPECT of every key, pipelined: a round trip per thousand keys, not per key."""
    for start in range(0, len(bases), batch):
        pipe = client.pipeline(transaction=False)
        for base in bases[start : start + batch]:
            inspect(keys=[], args=[base], client=pipe)
        yield from pipe.execute()
