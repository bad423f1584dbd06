"""The operator's subcommands: status, stop, clean, history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from singlerun.errors import SinglerunError
from singlerun.exitcodes import ExitCode
from singlerun.options import (
    Duration,
    apply,
    group_option,
    lock_dir_option,
    option,
    stop_options,
)


def _store(lock_dir: str | None) -> Any:
    from singlerun import lockdir
    from singlerun.store.files import FileStore

    return FileStore(lockdir.prepare(lock_dir or lockdir.default_lock_dir()))


def _key_filter(group: str | None, name: str | None) -> tuple[str | None, str | None]:
    """`-n` without `-g` means the default group, as for a run; names are validated."""
    from singlerun.keys import DEFAULT_GROUP, JobKey

    if name is not None:
        group = group or DEFAULT_GROUP
        JobKey.make(group, name)
    elif group is not None:
        JobKey.make(group, "x")
    return group, name


STATUS_EPILOG = """\b
Examples:
  singlerun status                      # every key
  singlerun status -g backups --json    # one group, for programs
  singlerun status -n nightly -g backups && echo running
\b
Exit status with -n (LSB): 0 running, 1 stale, 3 not running.
"""


@click.command("status", epilog=STATUS_EPILOG)
@group_option(None)
@option("-n", "--name", help="Only this job (exit status 0 running, 1 stale, 3 not running).")
@option("--json", "as_json", is_flag=True, help="A JSON array with stable field names.")
@lock_dir_option()
def status_cmd(group: str | None, name: str | None, as_json: bool, lock_dir: str | None) -> int:
    """Show every key: running, waiting, stale or idle, and its last run."""
    import json

    from singlerun import status
    from singlerun.history import Ledger

    group, name = _key_filter(group, name)
    store = _store(lock_dir)
    entries = status.gather(
        store.inspect(), _ledger_read(Ledger(store.lock_dir).last_by_key), group, name
    )
    click.echo(json.dumps(entries, indent=2) if as_json else status.render(entries), nl=as_json)
    if name is None:
        return ExitCode.OK
    state = entries[0]["state"]
    return {"running": ExitCode.OK, "stale": 1}.get(state, ExitCode.NOT_RUNNING)


def _ledger_read(read: Callable[[], Any]) -> Any:
    import sqlite3

    try:
        return read()
    except sqlite3.Error as exc:
        raise SinglerunError(f"cannot read the run history: {exc}") from None


STOP_EPILOG = """\b
Examples:
  singlerun stop -g backups -n nightly
  singlerun stop -n stuck --signal INT --kill-after 30s --timeout 1m
\b
Exit status: 0 stopped, 3 nothing was running, 1 still running at --timeout.
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
@lock_dir_option()
def stop_cmd(
    group: str | None,
    name: str,
    signal: int,
    kill_after: float,
    timeout: float,
    lock_dir: str | None,
) -> int:
    """Stop a running job: signal its process group, SIGKILL it after --kill-after."""
    from singlerun.keys import JobKey
    from singlerun.liveness import record_alive
    from singlerun.stopping import stop_run

    group, name = _key_filter(group, name)
    key = JobKey(group or "default", name)
    store = _store(lock_dir)
    targets = [r for s in store.inspect() if s.key == key for r in s.holders if record_alive(r)]
    if not targets:
        click.echo(f"singlerun: {key} is not running", err=True)
        return ExitCode.NOT_RUNNING
    stopped = all(
        stop_run(store, r, sig=signal, kill_after=kill_after, timeout=timeout, reason="stopped")
        for r in targets
    )
    for r in targets:
        click.echo(
            f"{'stopped' if stopped else 'still running:'} {key} (job {r.job_id}, pid {r.pid})"
        )
    return ExitCode.OK if stopped else ExitCode.STILL_RUNNING


@click.command(
    "clean", epilog="\b\nExamples:\n  singlerun clean --dry-run\n  singlerun clean -g ci"
)
@group_option(None)
@option("--dry-run", is_flag=True, help="Only say what would be removed.")
@lock_dir_option()
def clean_cmd(group: str | None, dry_run: bool, lock_dir: str | None) -> int:
    """Remove the records of runs that died; print what was removed."""
    import json

    from singlerun.durations import rfc3339
    from singlerun.history import Ledger, Run

    group, _ = _key_filter(group, None)
    store = _store(lock_dir)
    lost = []
    for state in store.inspect():
        if not state.stale or (
            group is not None and (state.key is None or state.key.group != group)
        ):
            continue
        for record in store.clean(state, dry_run=dry_run):
            what = "would remove" if dry_run else "removed"
            who = (
                "an unreadable record"
                if record is None
                else (
                    f"job {record.job_id} (pid {record.pid}, started {rfc3339(record.started_at)})"
                )
            )
            click.echo(f"{what} stale record of {state.key or state.stem}: {who}")
            if record is not None:
                lost.append(
                    Run(
                        record.job_id,
                        record.group,
                        record.name,
                        record.host,
                        record.pid,
                        record.started_at,
                        None,
                        None,
                        "lost",
                        json.dumps(record.command),
                    )
                )
    if lost and not dry_run:
        _ledger_read(lambda: Ledger(store.lock_dir).add(*lost))
    return ExitCode.OK


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
@lock_dir_option()
def history_cmd(
    group: str | None, name: str | None, limit: int, as_json: bool, lock_dir: str | None
) -> int:
    """List finished runs, newest first."""
    from singlerun import status
    from singlerun.history import Ledger

    group, name = _key_filter(group, name)
    store = _store(lock_dir)
    runs = _ledger_read(lambda: Ledger(store.lock_dir).runs(group, name, limit))
    if as_json:
        import json

        rows = [
            {
                "group": r.group,
                "name": r.name,
                "host": r.host,
                "pid": r.pid,
                "command": r.argv,
                **status.last_run(r),
            }
            for r in runs
        ]
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(status.render_history(runs), nl=False)
    return ExitCode.OK


COMMANDS = (status_cmd, stop_cmd, clean_cmd, history_cmd)
