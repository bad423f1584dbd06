"""The operator's subcommands: status, stop, clean, history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from singlerun.exitcodes import ExitCode
from singlerun.options import (
    Duration,
    apply,
    group_option,
    option,
    stop_options,
    store_options,
)

if TYPE_CHECKING:
    from singlerun.keys import KeyFilter
    from singlerun.store.protocol import KeyState, Store


def _store(lock_dir: str | None, backend: str | None, *, read_only: bool = False) -> Store:
    from singlerun.store import open_store

    return open_store(lock_dir, backend, read_only=read_only)


def _only(group: str | None, name: str | None) -> KeyFilter:
    from singlerun.keys import KeyFilter

    return KeyFilter.make(group, name)


STATUS_EPILOG = """\b
Examples:
  singlerun status                      # running, waiting, stale, or ran in 7 days
  singlerun status --all                # every known key
  singlerun --backend URL status        # store options also go before the name
  singlerun status -g backups --json    # one group, for programs
  singlerun status -n nightly -g backups && echo running
\b
Exit status with -n (LSB): 0 running, 1 stale, 3 not running.
"""


@click.command("status", epilog=STATUS_EPILOG)
@group_option(None)
@option("-n", "--name", help="Only this job (exit status 0 running, 1 stale, 3 not running).")
@option(
    "--all",
    "show_all",
    is_flag=True,
    help="Every known key, also those idle for more than 7 days.",
)
@option("--json", "as_json", is_flag=True, help="A JSON array with stable field names.")
@apply(*store_options())
def status_cmd(
    group: str | None,
    name: str | None,
    show_all: bool,
    as_json: bool,
    lock_dir: str | None,
    backend: str | None,
) -> int:
    """Show the keys that are running, waiting, stale or ran in the last 7 days, and the
    last run of each."""
    from singlerun import render, status

    only = _only(group, name)
    with _store(lock_dir, backend, read_only=True) as store:
        recent = None if show_all else status.RECENT
        entries = status.gather(store.inspect(), _last_runs(store), only, recent=recent)
        click.echo(render.json_array(entries) if as_json else render.status(entries), nl=as_json)
        if only.key is None:
            return ExitCode.OK
        codes = {"running": ExitCode.OK, "stale": ExitCode.STALE}
        return codes.get(entries[0]["state"], ExitCode.NOT_RUNNING)


def _last_runs(store: Store) -> dict[tuple[str, str], Any]:
    """`status` without the history loses only its `last` column (a warning says why)."""
    from singlerun import say
    from singlerun.errors import StoreError

    try:
        return store.last_runs()
    except StoreError as exc:
        say(f"warning: {exc.message}; showing no last runs")
        return {}


STOP_EPILOG = """\b
Examples:
  singlerun stop -g backups -n nightly
  singlerun stop -n stuck --signal INT --kill-after 30s --timeout 1m
\b
Exit status: 0 stopped, 3 nothing was running, 1 still running at --timeout or
not acted on (an unverifiable record; a run that lost its lease and runs on),
4 not permitted (the job belongs to another user).
"""


@click.command("stop", epilog=STOP_EPILOG)
@group_option(None, "The job's group [default: default].")
@option("-n", "--name", required=True, help="The job to stop.")
@apply(*stop_options("stop sends first"))
@option(
    "--timeout",
    type=Duration(),
    default="30s",
    show_default=True,
    help="Give up (exit 1) if the job is still running after DURATION.",
)
@apply(*store_options())
def stop_cmd(
    group: str | None,
    name: str,
    signal: int,
    kill_after: float,
    timeout: float,
    lock_dir: str | None,
    backend: str | None,
) -> int:
    """Stop a running job: signal its process group, SIGKILL it after --kill-after."""
    from singlerun import ERROR, say
    from singlerun.errors import NotPermitted
    from singlerun.liveness import record_alive
    from singlerun.render import safe
    from singlerun.stopping import stop_runs

    key = _only(group, name).key
    with _store(lock_dir, backend) as store:
        states = [s for s in store.inspect() if s.key == key]
        adrift = [r for s in states for r in s.adrift]
        gone = {r.job_id for r in adrift}
        targets = [r for s in states for r in s.holders if record_alive(r) and r.job_id not in gone]
        # A run whose lease was lost hears no stop request: its job runs on by its choice.
        for r in adrift:
            say(
                f"cannot stop {key}: job {safe(r.job_id)} on {safe(r.host)} lost its lease and "
                f"runs on (--on-lease-lost continue): stop pid {r.pid} on that host",
                ERROR,
            )
        if not targets:
            if adrift:
                return ExitCode.NOT_STOPPED
            say(f"{key} is not running")
            return ExitCode.NOT_RUNNING
        code = ExitCode.NOT_STOPPED if adrift else ExitCode.OK
        outcomes = stop_runs(
            store, targets, sig=signal, kill_after=kill_after, timeout=timeout, reason="stopped"
        )
        for o in outcomes:  # each reported; one that failed held none of the others up
            if o.error is not None:
                say(f"cannot stop {key}: {o.error.message}", ERROR)
                refused = isinstance(o.error, NotPermitted)
                code = max(code, ExitCode.NOT_PERMITTED if refused else ExitCode.NOT_STOPPED)
                continue
            job = f"{key} (job {safe(o.record.job_id)}, pid {o.record.pid})"
            click.echo(f"stopped {job}" if o.done else f"still running: {job}")
            if not o.done:
                code = max(code, ExitCode.NOT_STOPPED)
        return code


CLEAN_EPILOG = """\b
Examples:
  singlerun clean --dry-run
  singlerun clean -g ci
  singlerun clean --idle 30d       # also forget keys unused for 30 days
"""


@click.command("clean", epilog=CLEAN_EPILOG)
@group_option(None)
@option("--dry-run", is_flag=True, help="Only say what would be removed.")
@option(
    "--idle",
    type=Duration(min_seconds=1.0),
    help="Also forget keys idle for longer than DURATION: their lock files or server "
    "state, and their runs in the history.",
)
@apply(*store_options())
def clean_cmd(
    group: str | None,
    dry_run: bool,
    idle: float | None,
    lock_dir: str | None,
    backend: str | None,
) -> int:
    """Remove the records of runs that died; print what was removed."""
    from singlerun import render
    from singlerun.history import Run

    only = _only(group, None)
    with _store(lock_dir, backend) as store:
        lost = []
        states = store.inspect()
        for state in states:
            if not only.matches(state.key):  # also a key with dead waiters only
                continue
            for record in store.clean(state, dry_run=dry_run):
                what = "would remove" if dry_run else "removed"
                whose = render.safe(state.key or state.stem)
                click.echo(f"{what} stale record of {whose}: {render.stale_record(record)}")
                if record is not None:
                    lost.append(Run.lost(record))
        if lost and not dry_run:
            store.add_runs(*lost)
        if idle is not None:
            _forget_idle(store, states, only, idle, dry_run)
        return ExitCode.OK


def _forget_idle(
    store: Store, states: list[KeyState], only: KeyFilter, idle: float, dry_run: bool
) -> None:
    """`clean --idle`: keys with no holder and no waiter whose last run (if any) ended
    before `idle` seconds ago. The store re-checks each under its own lock."""
    import time

    from singlerun import render, status
    from singlerun.durations import rfc3339
    from singlerun.keys import JobKey

    last = store.last_runs()
    keys = {s.key for s in states if s.key is not None} | {JobKey(*k) for k in last}
    busy = {s.key for s in states if s.holders or s.unrecorded or s.waiters}
    since = time.time() - idle
    for key in sorted(keys - busy, key=lambda k: (k.group, k.name)):
        active = status.last_active(last.get((key.group, key.name)))
        if not only.matches(key) or (active is not None and active >= since):
            continue
        if store.forget(key, dry_run=dry_run):
            when = "no runs known" if active is None else f"last active {rfc3339(active)}"
            verb = "would forget" if dry_run else "forgot"
            click.echo(f"{verb} idle key {render.safe(key)} ({when})")


HISTORY_EPILOG = """\b
Examples:
  singlerun history --limit 20
  singlerun history -g backups -n nightly --json
\b
Outcomes: ok, failed, killed, timeout, replaced, lost (its singlerun died).
"""


@click.command("history", epilog=HISTORY_EPILOG)
@group_option(None)
@option("-n", "--name", help="Only this job.")
@option(
    "--limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    metavar="N",
    help="At most N runs.",
)
@option("--json", "as_json", is_flag=True, help="A JSON array with stable field names.")
@option(
    "--summary",
    is_flag=True,
    help="One row per key: runs, success rate, p50/p95 duration, last success and a chart "
    "of the last 20 runs (all of the history; --limit does not apply).",
)
@apply(*store_options())
def history_cmd(
    group: str | None,
    name: str | None,
    limit: int,
    as_json: bool,
    summary: bool,
    lock_dir: str | None,
    backend: str | None,
) -> int:
    """List finished runs, newest first."""
    from singlerun import render, status

    with _store(lock_dir, backend, read_only=True) as store:
        if summary:
            from singlerun import summary as summaries

            click.echo(summaries.render(store.runs(_only(group, name), None)), nl=False)
            return ExitCode.OK
        runs = store.runs(_only(group, name), limit)
        if as_json:
            click.echo(render.json_array([status.history_row(r) for r in runs]))
        else:
            click.echo(render.history(runs), nl=False)
        return ExitCode.OK


COMMANDS = (status_cmd, stop_cmd, clean_cmd, history_cmd)
