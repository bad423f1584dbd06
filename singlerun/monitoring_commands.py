"""The monitoring subcommands: `check` (a monitoring plugin) and `metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any

import click

from singlerun.exitcodes import ExitCode
from singlerun.options import Duration, apply, group_option, option, store_options


class PluginCommand(click.Command):
    """A monitoring plugin exits 3 (UNKNOWN) for bad arguments: 2 would read as CRITICAL."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from singlerun.errors import SinglerunError
        from singlerun.monitor import UNKNOWN

        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            message = " ".join(exc.format_message().split())
            click.echo(f"SINGLERUN UNKNOWN - {message}")
            raise SinglerunError(message, UNKNOWN) from None


CHECK_EPILOG = """\b
Examples:
  singlerun check -g backups -n nightly --max-age 26h --warn-age 25h --max-duration 2h
  singlerun check -g backups --max-age 2d          # every key of the group
  singlerun --backend redis://locks/0 check -n deploy --max-age 1h --json
\b
Exit status (the monitoring-plugin convention): 0 OK, 1 WARNING, 2 CRITICAL (no success
within --max-age, the last run failed, was killed, timed out or lost its lease, a run
longer than --max-duration, a stale key), 3 UNKNOWN (the store cannot be read, bad
arguments, no such keys).
"""


@click.command("check", cls=PluginCommand, epilog=CHECK_EPILOG)
@group_option(None, "Only keys of this group.")
@option("-n", "--name", help="Only this key (in group default unless -g is given).")
@option(
    "--max-age",
    type=Duration(min_seconds=1.0),
    required=True,
    help="CRITICAL if no run succeeded within DURATION.",
)
@option("--warn-age", type=Duration(min_seconds=1.0), help="WARNING past DURATION.")
@option(
    "--max-duration",
    type=Duration(min_seconds=1.0),
    help="CRITICAL while a run has been running longer than DURATION.",
)
@option("--warn-duration", type=Duration(min_seconds=1.0), help="WARNING past DURATION.")
@option("--json", "as_json", is_flag=True, help="The verdicts as JSON, for machines.")
@apply(*store_options())
def check_cmd(
    group: str | None,
    name: str | None,
    max_age: float,
    warn_age: float | None,
    max_duration: float | None,
    warn_duration: float | None,
    as_json: bool,
    lock_dir: str | None,
    backend: str | None,
) -> int:
    """Monitoring plugin: did the job succeed recently, and is it healthy now?"""
    import json

    from singlerun import monitor
    from singlerun.errors import SinglerunError
    from singlerun.keys import JobKey, KeyFilter
    from singlerun.store import open_store

    only = KeyFilter.make(group, name)
    thresholds = monitor.Thresholds(max_age, warn_age, max_duration, warn_duration)
    try:
        with open_store(lock_dir, backend, read_only=True) as store:
            states = [s for s in store.inspect() if s.key is not None and only.matches(s.key)]
            stats = store.key_stats(only)
    except SinglerunError as exc:  # unreadable store, bad URL: a plugin says UNKNOWN
        click.echo(f"SINGLERUN UNKNOWN - {exc.message}")
        raise SinglerunError(exc.message, monitor.UNKNOWN) from None
    by_key = {s.key: s for s in states if s.key is not None}
    keys = {*by_key, *(JobKey(*k) for k in stats)}
    if only.key is not None:
        keys = {only.key}
    verdicts = [
        monitor.judge(k, by_key.get(k), stats.get((k.group, k.name)), thresholds)
        for k in sorted(keys, key=lambda k: (k.group, k.name))
    ]
    code, line = monitor.status_line(verdicts, thresholds)
    if as_json:
        overall = {"status": monitor.NAMES[code], "code": code}
        keyed = [v.as_json() for v in verdicts]
        click.echo(json.dumps({**overall, "keys": keyed}, indent=2))
    else:
        click.echo(line)
    return code


METRICS_EPILOG = """\b
Examples:
  singlerun metrics                       # every key, Prometheus text format
  singlerun metrics -g backups > /var/lib/node_exporter/textfile/backups.prom
  singlerun --textfile-dir /var/lib/node_exporter/textfile -n nightly -- ./backup.sh
"""


@click.command("metrics", epilog=METRICS_EPILOG)
@group_option(None, "Only keys of this group.")
@option("-n", "--name", help="Only this key.")
@apply(*store_options())
def metrics_cmd(
    group: str | None, name: str | None, lock_dir: str | None, backend: str | None
) -> int:
    """Print every key's runs and state in the Prometheus text format."""
    from singlerun import metrics
    from singlerun.keys import KeyFilter
    from singlerun.store import open_store

    with open_store(lock_dir, backend, read_only=True) as store:
        click.echo(metrics.of_store(store, KeyFilter.make(group, name)), nl=False)
    return ExitCode.OK


COMMANDS: tuple[Any, ...] = (check_cmd, metrics_cmd)
