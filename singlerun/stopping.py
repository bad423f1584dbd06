"""The stop sequence, shared by `singlerun stop` and `--replace`.

Signal the job's process group, SIGKILL it after `kill_after`, and wait (psutil, no
busy loop) until the run's processes are gone: its singlerun releases the lock and
writes the ledger row before it exits. Knows processes and records, not lock files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field

import psutil

from singlerun.errors import NotPermitted, SinglerunError, StoreError
from singlerun.exitcodes import ExitCode
from singlerun.identity import host
from singlerun.keys import MAX_SLOTS, JobKey
from singlerun.liveness import alive
from singlerun.record import Record
from singlerun.store.protocol import Store


class Unverifiable(SinglerunError):
    """A record that cannot be checked against the process table: reported, never acted on."""

    exit_code = ExitCode.NOT_STOPPED


def _refused(record: Record) -> NotPermitted:
    return NotPermitted(
        f"not permitted to signal job {record.job_id} (pid {record.pid}, user {record.user})"
    )


def unverifiable(record: Record) -> str | None:
    """Why a local record cannot be trusted to name processes to signal, if it cannot: a
    record is only a file, and in a shared directory anyone in the group may have written
    it. Without a start time to compare, a PID may long since be someone else's."""
    if record.pid <= 1 or (record.child_pid is not None and record.child_pid <= 1):
        return "it names PID 1 or less"
    if record.pid_started is None or (record.child_pid and record.child_started is None):
        return "it has no process start time to check the PID against"
    mine = os.getpgrp()
    if record.child_pid == mine or record.pid == os.getpid():
        return "it names singlerun's own process group"
    return None


def _processes(record: Record) -> list[psutil.Process]:
    """The run's live processes: its singlerun, its job and the job's descendants, each
    verified by PID and start time, and tied to the uid that owns the record's file."""
    procs: list[psutil.Process] = []
    run = ((record.pid, record.pid_started), (record.child_pid, record.child_started))
    for pid, started in run:
        if pid and started is not None and alive(pid, started):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                _check_owner(record, proc, procs[0] if procs else None)
                procs.append(proc)
                if pid == record.child_pid:
                    procs.extend(proc.children(recursive=True))
    return procs


def _check_owner(record: Record, proc: psutil.Process, wrapper: psutil.Process | None) -> None:
    """In a shared directory a group member can write a record naming anyone's process.
    Believe it only for processes of the uid that owns the record file: its singlerun, and
    the job that singlerun started (whose uid the job itself may have changed, as sudo
    does). A root-owned record was written by root."""
    owner = record.owner_uid
    if owner is None or owner == 0:
        return
    if wrapper is not None and proc.ppid() == wrapper.pid:
        return  # the job of a verified singlerun
    uid = proc.uids().real
    if uid != owner:
        raise Unverifiable(
            f"not acting on job {record.job_id}'s record: its process {proc.pid} runs as "
            f"uid {uid}, but the record file belongs to uid {owner}"
        )


def _signal(record: Record, procs: list[psutil.Process], sig: int) -> None:
    """Raises NotPermitted (never swallowed: the job would run on unnoticed)."""
    group = record.child_pid  # the job leads its own process group
    try:
        if group:
            os.killpg(group, sig)
            if sig not in (signal.SIGKILL, signal.SIGCONT):  # a stopped job can act on it
                os.killpg(group, signal.SIGCONT)
        else:  # not started yet: its singlerun forwards the signal
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise _refused(record) from None
    for proc in procs:
        # Descendants that left the group get it directly; its singlerun ends by itself.
        try:
            if proc.pid != record.pid and os.getpgid(proc.pid) != group:
                proc.send_signal(sig)
        except (psutil.AccessDenied, PermissionError):
            raise _refused(record) from None
        except (psutil.Error, OSError):
            pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """psutil.wait_procs, but a zombie counts as gone: without an init that reaps, orphans
    stay zombies forever. Returns the processes still alive at the timeout."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if _alive(p)]
    while left and time.monotonic() < deadline:
        _, left = psutil.wait_procs(left, timeout=min(0.1, deadline - time.monotonic()))
        left = [p for p in left if _alive(p)]
    return left


@dataclass
class Outcome:
    """How stopping one run went: `done` once none of its processes is left; `error` if it
    was not acted on (NotPermitted, Unverifiable)."""

    record: Record
    done: bool = False
    error: SinglerunError | None = None
    procs: list[psutil.Process] = field(default_factory=list)


def _begin_local(store: Store, outcome: Outcome, sig: int, reason: str) -> None:
    """Verify and signal one local run; raises NotPermitted or Unverifiable."""
    record = outcome.record
    why = unverifiable(record)
    if why is not None:
        raise Unverifiable(f"not acting on job {record.job_id}'s record: {why}")
    procs = _processes(record)
    for proc in procs:  # ask first: a run we may not stop is not marked as stopped either
        try:
            os.kill(proc.pid, 0)
        except PermissionError:
            raise _refused(record) from None
        except ProcessLookupError:
            pass
    if procs:
        with contextlib.suppress(StoreError):  # only the note for its history row: signal anyway
            store.mark_stop(record, reason)
        _signal(record, procs, sig)
    outcome.procs = procs


def _holding(store: Store, outcomes: list[Outcome]) -> list[Outcome]:
    """The remote runs among `outcomes` that still hold a slot of their key."""
    keys = {JobKey(o.record.group, o.record.name) for o in outcomes}
    held = {h.job_id for key in keys for h in store.holders(key, MAX_SLOTS)}
    return [o for o in outcomes if o.record.job_id in held]


def stop_runs(
    store: Store,
    records: list[Record],
    *,
    sig: int,
    kill_after: float,
    timeout: float,
    reason: str,
) -> list[Outcome]:
    """Stop every run `records` names at once, and wait for them together: signal all, then
    SIGKILL whatever is left after `kill_after`, then give up at `timeout`. One that may not
    be stopped is reported in its Outcome and does not hold the others up.

    A run on another host, and any run of a network store, is stopped by its own singlerun,
    which sees the request within a second; the stopper polls the store for its slot
    (holders and waiters never poll)."""
    outcomes = [Outcome(r) for r in records]
    # A network store's records are data from a server anyone with its password can write:
    # they never name a process for us to signal, even one on this host. The request goes
    # through the store to the holder's own singlerun, which knows its job (docs/CONTRACT.md §6).
    routed = store.reaches_other_hosts
    local = [o for o in outcomes if o.record.host == host() and not routed]
    remote = [o for o in outcomes if o not in local]
    if not routed:  # a lock directory: nobody there would read the request, say so now
        for o in remote:
            o.error = Unverifiable(
                f"job {o.record.job_id} runs on host {o.record.host}, and a lock directory's "
                "stop reaches only this host's processes (run singlerun stop there)"
            )
        remote = []
    for o in remote:
        store.mark_stop(o.record, reason, sig, kill_after)
    for o in local:
        try:
            _begin_local(store, o, sig, reason)
        except (NotPermitted, Unverifiable) as exc:
            o.error = exc
    acting = [o for o in local if o.error is None]
    start = time.monotonic()
    left = _wait_gone([p for o in acting for p in o.procs], min(kill_after, timeout))
    if left and kill_after < timeout:
        for o in acting:
            if mine := [p for p in o.procs if p in left]:
                with contextlib.suppress(NotPermitted):
                    _signal(o.record, mine, signal.SIGKILL)
        left = _wait_gone(left, timeout - (time.monotonic() - start))
    for o in acting:
        o.done = not any(p in left for p in o.procs)
    deadline = start + timeout
    pending = _holding(store, remote) if remote else []
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        pending = _holding(store, pending)
    for o in remote:
        o.done = o not in pending
    return outcomes


def stop_run(
    store: Store, record: Record, *, sig: int, kill_after: float, timeout: float, reason: str
) -> bool:
    """Stop the run `record` names; True once none of its processes is left.

    Raises NotPermitted or Unverifiable if it may not be acted on."""
    (outcome,) = stop_runs(
        store, [record], sig=sig, kill_after=kill_after, timeout=timeout, reason=reason
    )
    if outcome.error is not None:
        raise outcome.error
    return outcome.done
