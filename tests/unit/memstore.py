"""A toy store in memory: the whole of what a new store writes (store/base.py's
primitives and the rest of protocol.Store), used by the unit tests of the shared layer.
Its size is the checklist's proof (docs/ARCHITECTURE.md): a store is this much code."""

from __future__ import annotations

from singlerun.busy import WaitTimeout
from singlerun.history import Run
from singlerun.keys import JobKey, KeyFilter
from singlerun.lease import Lease, Renewal, StopRequest
from singlerun.record import Record
from singlerun.store.base import StoreBase
from singlerun.store.protocol import KeyState


class MemoryStore(StoreBase):
    kind = "memory"
    location = "memory"
    reaches_other_hosts = False

    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = ttl
        self.held: dict[tuple[str, int], Record] = {}
        self.stops: dict[tuple[str, int], StopRequest] = {}
        self.history: list[Run] = []
        self.fence = 0
        self.closed = False
        self.answers: list[Renewal] = []  # what renew() says next (then: still held)

    def _try(self, key: JobKey, me: Record, slots: int) -> Lease | None:
        for slot in range(slots):
            if (key.stem, slot) not in self.held:
                self.held[key.stem, slot] = me
                self.fence += 1
                return Lease(key, slot, str(self.fence), self.ttl, None, None, me.job_id)
        return None

    def _queue(self, key: JobKey, me: Record, slots: int, deadline: float | None) -> Lease:
        raise WaitTimeout(key, [])  # one thread: nobody frees a slot while we wait

    def _slots_held(self, key: JobKey) -> list[tuple[int, Record | None]]:
        return [(slot, r) for (stem, slot), r in self.held.items() if stem == key.stem]

    def _write_stop(self, key: JobKey, slot: int, request: StopRequest) -> None:
        self.stops[key.stem, slot] = request

    def publish(self, lease: Lease, record: Record) -> None:
        self.held[lease.key.stem, lease.slot] = record

    def regrant(self, lease: Lease, job_id: str) -> None:
        self.fence += 1
        lease.token, lease.handle = str(self.fence), job_id

    def renew(self, lease: Lease) -> Renewal:
        stop = self.stops.get((lease.key.stem, lease.slot))
        return self.answers.pop(0) if self.answers else Renewal(True, stop)

    def stop_request(self, lease: Lease) -> StopRequest | None:
        return self.stops.pop((lease.key.stem, lease.slot), None)

    def release(self, lease: Lease) -> None:
        self.held.pop((lease.key.stem, lease.slot), None)

    def inspect(self) -> list[KeyState]:
        states: dict[str, KeyState] = {}
        for (stem, _), record in self.held.items():
            states.setdefault(stem, KeyState(stem, JobKey.from_stem(stem))).holders.append(record)
        return [state.named() for state in states.values()]

    def clean(self, state: KeyState, *, dry_run: bool) -> list[Record | None]:
        return []  # a holder's record goes with its release: nothing is ever stale

    def forget(self, key: JobKey, *, dry_run: bool) -> bool:
        if self._slots_held(key):
            return False
        if not dry_run:
            self.history = [r for r in self.history if (r.group, r.name) != (key.group, key.name)]
        return True

    def add_runs(self, *runs: Run, keep: int | None = None) -> None:
        self.history.extend(r for r in runs if r.job_id not in {h.job_id for h in self.history})

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        found = sorted(
            (r for r in self.history if only.matches(JobKey(r.group, r.name))),
            key=lambda r: (r.started_at, r.job_id),
            reverse=True,
        )
        return found[:limit] if limit is not None else found

    def last_runs(self) -> dict[tuple[str, str], Run]:
        return {(r.group, r.name): r for r in reversed(self.runs(KeyFilter(), None))}

    def close(self) -> None:
        self.closed = True
