"""What every store shares, so that a store writes only its primitives (as filelock's
backends write only `_acquire`/`_release`):

- `_try(key, me, slots)`: take a free slot now, or None;
- `_queue(key, me, slots, deadline)`: wait first come, first served until one is taken,
  raising WaitTimeout (holders unfilled) once `deadline` passes;
- `_slots_held(key)`: the key's held slots and their records (None: unreadable);
- `_write_stop(key, slot, request)`: leave a stop request for a slot's holder.

From them this base builds `acquire` (try, conflict or queue), `holders`, `mark_stop`, the
fencing environment, key statistics and closing on every path (a store is a context
manager). `client` and `failing_as` are the client-import guard and the one-line error
wrapper of a network store. The runner and the subcommands see only `protocol.Store`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from singlerun.busy import HeldBack, LockBusy, WaitTimeout
from singlerun.errors import Dropped, StoreError
from singlerun.keys import JobKey

if TYPE_CHECKING:
    from singlerun.history import Run
    from singlerun.keys import KeyFilter
    from singlerun.keystats import KeyStats
    from singlerun.lease import Lease, StopRequest
    from singlerun.record import Record


def client(module: str, store: str, package: str, extra: str) -> Any:
    """The store's client library, or the one line that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise StoreError(
            f"the {store} backend needs {package}: pip install 'singlerun[{extra}]'"
        ) from None


def slot_number(value: object) -> int | None:
    """A slot number read from a server, or None for a field no singlerun writes (anyone
    with the server's password can add one, and one must not break `status` for all)."""
    from singlerun.keys import MAX_SLOTS

    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    ok = text.isascii() and text.isdigit() and int(text) < MAX_SLOTS
    return int(text) if ok else None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextlib.contextmanager
def failing_as(
    location: str,
    action: str,
    errors: type[BaseException] | tuple[type[BaseException], ...],
    passing: tuple[type[BaseException], ...] = (),
    dropped: tuple[type[BaseException], ...] = (),
    malformed: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """A client's `errors` leave as one StoreError line ("cannot ACTION LOCATION: why"),
    `dropped` ones (a connection lost) as Dropped, `malformed` ones (a reply of a shape
    neither the client nor singlerun expects: a server is not trusted) as a StoreError that
    says so; `passing` ones go through for the caller to turn into something else."""
    try:
        yield
    except passing:
        raise
    except dropped as exc:
        raise Dropped(f"cannot {action} {location}: {first_line(exc)}", location) from None
    except errors as exc:
        raise StoreError(f"cannot {action} {location}: {first_line(exc)}") from None
    except malformed as exc:
        why = f"{type(exc).__name__}: {first_line(exc)}"
        raise StoreError(f"cannot {action} {location}: an unexpected reply ({why})") from None


class StoreBase:
    kind: str  # "files", "redis", "postgres": what the runner may ask of a store's kind
    location: str  # where the locks live, for messages (never with a password)
    reaches_other_hosts: bool = True  # see protocol.Store
    fencing: bool = True  # grants carry a fencing token the job is told of
    queue_first: bool = False  # a waiter goes to `_queue` at once (it takes a free slot too)

    def exposure(self) -> str:
        """Why a run's lock traffic can be read or forged on the way, if it can (a warning
        for runs, issue 18.4); '' if not."""
        return ""

    # -- the primitives a store writes ------------------------------------------------------

    def _try(self, key: JobKey, me: Record, slots: int) -> Lease | None:
        raise NotImplementedError

    def _queue(self, key: JobKey, me: Record, slots: int, deadline: float | None) -> Lease:
        raise NotImplementedError

    def _slots_held(self, key: JobKey) -> list[tuple[int, Record | None]]:
        raise NotImplementedError

    def _write_stop(self, key: JobKey, slot: int, request: StopRequest) -> None:
        raise NotImplementedError

    def runs(self, only: KeyFilter, limit: int | None) -> list[Run]:
        raise NotImplementedError

    def stop_request(self, lease: Lease) -> StopRequest | None:
        # A store of leases is asked nothing here: its renewals carry the request (Renewal.stop).
        raise NotImplementedError

    def adrift(self, lease: Lease) -> None:
        pass  # a kernel lock is never lost while its holder lives

    def close(self) -> None:
        pass

    # -- built on them ------------------------------------------------------------------------

    def acquire(
        self,
        key: JobKey,
        me: Record,
        *,
        slots: int,
        wait: bool,
        deadline: float | None,
        job: tuple[int, float | None] | None = None,
    ) -> Lease:
        self._ahead, self._handover = job, False
        lease = None
        try:
            if not (wait and self.queue_first):
                lease = self._try(key, me, slots)
        except HeldBack:
            if not wait:
                raise
        if lease is not None:
            return lease
        if not wait:
            busy = LockBusy(key, self._named_holders(key, slots))
            busy.handover = self._handover
            raise busy
        try:
            return self._queue(key, me, slots, deadline)
        except WaitTimeout as exc:
            exc.holders = self._named_holders(key, slots)
            raise

    _ahead: tuple[int, float | None] | None = None  # acquire's `job`, for `_named`
    _handover = False  # _try was refused for a live waiter heading the queue (Redis)

    def _named(self, me: Record, token: str, ttl: float) -> Record | None:
        """The holder record a grant publishes when the job was forked ahead: it names the
        job, so that the handoff needs no request more to say so (issue 21); else None."""
        if self._ahead is None:
            return None
        import time

        pid, started = self._ahead
        named = me._replace(started_at=time.time(), ttl=ttl, token=token)
        return named.with_child(pid, started)

    def holders(self, key: JobKey, slots: int) -> list[Record]:
        return [r for slot, r in self._slots_held(key) if slot < slots and r is not None]

    def _named_holders(self, key: JobKey, slots: int) -> list[Record]:
        """For the conflict's message: a server that stopped answering meanwhile (the wait
        timed out behind an outage) leaves the holders unnamed, and the conflict stands."""
        try:
            return self.holders(key, slots)
        except StoreError:
            return []

    def _slot_of(self, record: Record) -> int | None:
        for slot, found in self._slots_held(JobKey(record.group, record.name)):
            if found is not None and found.job_id == record.job_id:
                return slot
        return None

    def mark_stop(
        self, record: Record, reason: str, sig: int | None = None, kill_after: float = 10.0
    ) -> None:
        from singlerun.identity import host, user
        from singlerun.lease import StopRequest

        slot = self._slot_of(record)
        if slot is not None:
            by = f"{user()}@{host()}"  # for the stopped run's history row
            request = StopRequest(reason, record.job_id, sig or 0, kill_after, by)
            self._write_stop(JobKey(record.group, record.name), slot, request)

    def job_env(self, lease: Lease) -> dict[str, str]:
        return {"SINGLERUN_FENCING_TOKEN": lease.token} if self.fencing else {}

    def key_stats(self, only: KeyFilter) -> dict[tuple[str, str], KeyStats]:
        from singlerun.keystats import stats_of

        return stats_of(self.runs(only, None))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
