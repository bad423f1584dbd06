"""The Redis store: one instance of a job across many machines (docs/CONTRACT.md §6).

A held slot is a lease with a TTL that the holder's singlerun renews (ticker.py);
each grant carries a fencing token; release is compare-and-delete. Waiters queue FIFO
across hosts, each with a ticket lease of its own, and block on a wake-up list of their
own (BLPOP: what a release pushes stays until it is read), never longer than a third of
the TTL, so that a waiter ahead that died silently costs at most that. History is a
capped stream. Every multi-step change is one Lua script (scripts.py). redis-py is
imported here only, so the file store never pays for it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singlerun.busy import HeldBack, WaitTimeout
from singlerun.errors import Dropped, StoreError
from singlerun.keys import JobKey, KeyFilter
from singlerun.lease import Lease, Reclaimed, Renewal, StopRequest
from singlerun.record import Record, encode, parse
from singlerun.store.base import StoreBase, failing_as, slot_number
from singlerun.store.protocol import KeyState
from singlerun.store.redis import history, scripts, view
from singlerun.store.redis.connect import MALFORMED, connect, sleep
from singlerun.store.redis.url import RedisURL
from singlerun.store.redis.url import parse as parse_url

if TYPE_CHECKING:
    from singlerun.history import Run


@dataclass
class _Spot:
    place: str = ""  # a waiter's place in the queue, kept across a reconnect ('' none yet)


@dataclass
class _Held:
    value: str  # "JOB_ID FENCE": what the lease key holds while it is ours
    record: bytes  # the record last published, set again with a re-asserted lease


GRACE = 3.0  # seconds a new epoch waits for holders to re-assert their leases (scripts.py)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(StoreBase):
    kind = "redis"
    queue_first = True  # a waiter's first ask is also its queueing (scripts.ACQUIRE)

    @classmethod
    def open(cls, url: str, ttl: float) -> RedisStore:
        return cls(parse_url(url), ttl)

    def __init__(self, url: RedisURL, ttl: float) -> None:
        self.location = url.location
        self.ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self.prefix = url.prefix
        self._stream = f"{url.prefix}history"
        # Typed as Any: redis-py's stubs disagree with its own documented call forms.
        self.client: Any
        self.client, self._redis_error, self._dropped = connect(url, ttl)
        self._scripts = {
            name: self.client.register_script(getattr(scripts, name)) for name in scripts.NAMES
        }

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return failing_as(
            self.location, action, self._redis_error, dropped=self._dropped, malformed=MALFORMED
        )

    def _run(self, name: str, *args: str | int | bytes) -> Any:
        with self._errors("use"):
            return self._scripts[name](keys=[], args=list(args))

    def _base(self, key: JobKey) -> str:
        return f"{self.prefix}{{{key.stem}}}"

    # -- acquiring ---------------------------------------------------------------------------

    def _grant(
        self, key: JobKey, me: Record, slots: int, spot: _Spot | None = None
    ) -> Lease | None:
        """A lease, or None if every slot is held (or someone waits ahead). A waiter passes
        its `spot`: the ask also keeps its place in the queue (scripts.ACQUIRE), which the
        reply updates. Raises HeldBack while the server's data is too new to trust."""
        base = self._base(key)
        named = self._named(me, "", self.ttl)  # its token is the fence, filled in by the script
        holding = b"" if named is None else encode(named)
        asked = time.monotonic()  # the lease's clock starts no later than the server's
        record = encode(me)
        args = (base, slots, me.job_id, self._ttl_ms, int(spot is not None), record, key.stem)
        epoch = (f"{self.prefix}keys", f"{self.prefix}epoch", int(GRACE * 1000))
        place = "" if spot is None else spot.place
        reply = self._run("ACQUIRE", *args, *epoch, place, holding)
        with self._errors("use"):  # a reply of another shape: one line, never a crash
            if not isinstance(reply, list):
                raise TypeError(f"{type(reply).__name__} for a list")
            if int(reply[0]) < 0 and spot is not None:
                if not (place := _text(reply[-1])).isdecimal() or not place.isascii():
                    raise ValueError(f"a place of {place[:20]!r}")
                spot.place = place
            if int(reply[0]) == -3:
                raise HeldBack(key, self._held_back(int(reply[1]) / 1000, bool(reply[2])))
            if int(reply[0]) < 0:
                self._handover = int(reply[0]) == -1
                return None
            slot, fence, left = int(reply[0]), str(int(reply[1])), reply[2]
        reclaimed = None if not left else Reclaimed(parse(left))
        if named is not None:  # as the script wrote it
            record = holding.replace(b'"token":""', b'"token":"%s"' % fence.encode(), 1)
        held = _Held(f"{me.job_id} {fence}", record)
        named = None if named is None else named._replace(token=fence)
        return Lease(key, slot, fence, self.ttl, None, reclaimed, held, asked, named)

    def _held_back(self, wait: float, lost: bool) -> HeldBack.Why:
        why = "lost its data and a holder from before re-took its lease" if lost else (
            "has new data (restarted, failed over, or new)")  # fmt: skip
        return HeldBack.Why(f"{self.location} {why}", wait, lost)

    def _try(self, key: JobKey, me: Record, slots: int) -> Lease | None:
        # The first instants of a new epoch (GRACE) are waited out, even without --wait: a
        # brand-new server looks the same and must just work.
        while True:
            try:
                return self._grant(key, me, slots)
            except HeldBack as held:
                if held.why.lost or held.why.wait > GRACE:
                    raise
                time.sleep(held.why.wait)

    def _queue(self, key: JobKey, me: Record, slots: int, deadline: float | None) -> Lease:
        from singlerun.store.outage import Outage

        outage = Outage(self.location, key, deadline)
        lease, spot = None, _Spot()
        try:
            while lease is None:
                try:
                    with self._errors("wait on"):
                        lease = self._wait_once(key, me, slots, deadline, spot)
                    outage.over()
                except Dropped as exc:  # a dropped connection, a restart: try again
                    outage.wait_out(exc.message.split(": ", 1)[-1])
            return lease
        finally:
            if lease is None:
                with contextlib.suppress(StoreError):
                    unlist = (f"{self.prefix}keys", key.stem)
                    self._run("LEAVE", self._base(key), me.job_id, *unlist)

    def _wait_once(
        self, key: JobKey, me: Record, slots: int, deadline: float | None, spot: _Spot
    ) -> Lease | None:
        """One try for a slot, and if none, one sleep until a wake-up: a third of the TTL
        at most (our ticket is renewed, and a waiter ahead that died silently costs no more
        than that)."""
        pause = self.ttl / 3
        try:
            if (lease := self._grant(key, me, slots, spot)) is not None:
                return lease
        except HeldBack as held:
            pause = min(pause, held.why.wait)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(key, [])
        sleep(self.client, f"{self._base(key)}:wake:{me.job_id}", min(pause, remaining or pause))
        return None

    def regrant(self, lease: Lease, job_id: str) -> None:
        held: _Held = lease.handle
        fence = self._run("REGRANT", self._base(lease.key), lease.slot, held.value, job_id)
        if not fence:
            raise StoreError("the lease was lost between two attempts")
        lease.token = _text(fence)
        held.value = f"{job_id} {lease.token}"

    def publish(self, lease: Lease, record: Record) -> None:
        held: _Held = lease.handle
        held.record = encode(record)
        self._run("PUBLISH", self._base(lease.key), lease.slot, held.value, held.record)

    def renew(self, lease: Lease) -> Renewal:
        held: _Held = lease.handle
        base, keys, epoch = self._base(lease.key), f"{self.prefix}keys", f"{self.prefix}epoch"
        args = [base, lease.slot, held.value, self._ttl_ms, epoch, lease.key.stem, keys]
        try:
            reply = self._scripts["RENEW"](keys=[], args=args)
            if isinstance(reply, list) and len(reply) == 2 and reply[0] == 2:
                # Re-asserted after the server lost its data: the record goes back too.
                self._scripts["PUBLISH"](keys=[], args=[*args[:3], held.record])
        except (self._redis_error, *MALFORMED):  # never raises: the ticker decides
            return Renewal(None, None)
        # A reply of another shape is not an answer: as if the server could not be asked
        # (the lease then runs out on its deadline), never a crash that frees the key.
        if not isinstance(reply, list) or len(reply) != 2 or reply[0] not in (0, 1, 2):
            return Renewal(None, None)
        return Renewal(bool(reply[0]), StopRequest.parse(reply[1]) if reply[1] else None)

    def adrift(self, lease: Lease) -> None:
        held: _Held = lease.handle
        args = (held.value.split(" ")[0], self._ttl_ms, held.record, lease.key.stem)
        with contextlib.suppress(StoreError):
            self._run("ADRIFT", self._base(lease.key), *args, f"{self.prefix}keys")

    def release(self, lease: Lease) -> None:
        held: _Held = lease.handle
        job_id = held.value.split(" ")[0]
        unlist = (f"{self.prefix}keys", lease.key.stem)
        if not self._run("RELEASE", self._base(lease.key), lease.slot, held.value, job_id, *unlist):
            raise StoreError("the lease was lost during the run (it expired or was taken)")

    # -- inspection and control ----------------------------------------------------------------

    def _inspect(self, stem: str) -> tuple[list[Any], ...]:
        """(held slots, their records, stale slots, their records, waiters' records, the
        records of runs adrift)."""
        return tuple(self._run("INSPECT", f"{self.prefix}{{{stem}}}"))

    def _slots_held(self, key: JobKey) -> list[tuple[int, Record | None]]:
        held, held_recs, *_ = self._inspect(key.stem)
        pairs = zip(held, held_recs, strict=True)
        return [(n, parse(d)) for s, d in pairs if (n := slot_number(s)) is not None]

    def inspect(self) -> list[KeyState]:
        with self._errors("read"):  # a reply of another shape: one line, never a crash
            stems = sorted(_text(s) for s in self.client.smembers(f"{self.prefix}keys"))
            bases = [f"{self.prefix}{{{stem}}}" for stem in stems]
            found = view.replies(self.client, self._scripts["INSPECT"], bases)
            return [view.state(stem, reply) for stem, reply in zip(stems, found, strict=True)]

    def _write_stop(self, key: JobKey, slot: int, request: StopRequest) -> None:
        self._run("STOP", self._base(key), slot, request.job_id, request.encode())

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        base = f"{self.prefix}{{{state.stem}}}"
        stale = self._inspect(state.stem)[2]
        removed: list[Record | None] = []
        for slot in [n for s in stale if (n := slot_number(s)) is not None]:
            data = self._run("CLEAN", base, slot, int(dry_run), f"{self.prefix}keys", state.stem)
            if data:
                removed.append(parse(data))
        if not dry_run:
            self._run("PRUNE", base, f"{self.prefix}keys", state.stem)
        return removed

    def forget(self, key: JobKey, *, dry_run: bool) -> bool:
        from singlerun.keys import MAX_SLOTS

        args = (self._base(key), key.stem, f"{self.prefix}keys", int(dry_run), MAX_SLOTS)
        if not int(self._run("FORGET", *args)):
            return False
        if not dry_run:  # its runs: found by reading the stream, removed by ID
            with self._errors("forget in"):
                history.forget(self.client, self._scripts["HISTORY"], self._stream, key)
        return True

    # -- history: a capped stream (history.py) -------------------------------------------------

    def add_runs(self, *runs: Run, keep: int | None = None) -> None:
        with self._errors("write the run history to"):
            history.add(self.client, self._stream, runs, keep)

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        with self._errors("read the run history from"):
            every = history.known(history.entries(self._scripts["HISTORY"], self._stream))
            found = [r for r in every if only.matches(JobKey(r.group, r.name))]
        found.sort(key=lambda r: (r.started_at, r.job_id), reverse=True)  # as the file store
        return found if limit is None else found[:limit]

    def last_runs(self) -> dict[tuple[str, str], Run]:
        last: dict[tuple[str, str], Run] = {}
        with self._errors("read the run history from"):
            for run in history.known(history.entries(self._scripts["HISTORY"], self._stream)):
                last.setdefault((run.group, run.name), run)
        return last

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
