"""The command line (click only): parse options into a config, call one function per
subcommand, and turn every error into one `singlerun: ...` line and its exit code."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from singlerun import __version__
from singlerun.durations import parse_duration
from singlerun.errors import SinglerunError, UsageError
from singlerun.exitcodes import ExitCode

RUN_EPILOG = """\b
Examples:
  singlerun -n nightly -g backups -- ./backup.sh --full
  singlerun --wait-timeout 10m -n deploy -- ./deploy.sh     # queue, at most 10 minutes
  singlerun --replace -n preview -- ./build-preview.sh      # cancel the running one
  singlerun --max-runtime 1h -n report -- ./report.sh       # like timeout(1): exit 124
  singlerun -- ./sync.sh          # key derived from the command, like run-one
\b
Subcommands (singlerun COMMAND --help):
  run       the same as the form above
  status    what is running, waiting, stale; the last run of each key
  stop      stop a running job
  clean     remove stale records
  history   finished runs, newest first
\b
Exit status: the command's own; 128+N if it was killed by signal N; 75 if the key is
taken (--conflict-exit-code); 124 --max-runtime reached; 125 singlerun failed;
126 command not executable; 127 command not found; 2 usage error.
"""

Decorator = Callable[[Any], Any]


class Duration(click.ParamType):
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Signal(click.ParamType):
    name = "SIGNAL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from singlerun.supervise import signal_number  # lazy: only when given

        try:
            return signal_number(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def option(*decls: str, **kw: Any) -> Decorator:
    """A click option whose environment variable is SINGLERUN_<OPTION> (SPEC §8)."""
    long = next(d for d in decls if d.startswith("--"))
    envvar = "SINGLERUN_" + long[2:].upper().replace("-", "_")
    return click.option(*decls, envvar=envvar, show_envvar=True, **kw)


def lock_dir_option() -> Decorator:
    return option(
        "--lock-dir",
        metavar="DIR",
        help="Directory of lock files, records and the ledger "
        "[default: $XDG_RUNTIME_DIR/singlerun, else $TMPDIR/singlerun-UID].",
    )


def group_option(default: str | None, what: str = "Only this group.") -> Decorator:
    return option("-g", "--group", default=default, show_default=bool(default), help=what)


def stop_options(verb: str) -> list[Decorator]:
    return [
        option(
            "--signal",
            type=Signal(),
            default="TERM",
            show_default=True,
            help=f"The signal that {verb} (a name or a number).",
        ),
        option(
            "--kill-after",
            type=Duration(),
            default="10s",
            show_default=True,
            help="Send SIGKILL if the job is still running this long after the signal.",
        ),
    ]


def apply(*decorators: Decorator) -> Decorator:
    def wrap(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return wrap


class SinglerunGroup(click.Group):
    """`singlerun [OPTIONS] COMMAND...` means `singlerun run [OPTIONS] COMMAND...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        completing = ctx.resilient_parsing and not args  # shell completion of a subcommand
        if not completing and (not args or args[0] not in [*self.commands, "--version"]):
            args = ["run", *args]
        return super().parse_args(ctx, args)


class RunCommand(click.Command):
    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("singlerun", "[OPTIONS] [--] COMMAND [ARG]...")
        formatter.write_usage("singlerun", "run|status|stop|clean|history [OPTIONS] ...", "   or:")


@click.group(cls=SinglerunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="singlerun", message="%(prog)s %(version)s"
)
def cli() -> None:
    """Run at most one instance of a job at a time."""


@cli.command(
    "run", cls=RunCommand, epilog=RUN_EPILOG, context_settings={"allow_interspersed_args": False}
)
@option("-n", "--name", help="Job name (with the group, the key) [default: derived from COMMAND].")
@group_option("default", "Job group.")
@option(
    "--wait",
    is_flag=True,
    help="If the key is taken, queue (first come, first served) until it is free.",
)
@option("--wait-timeout", type=Duration(), help="Give up waiting after DURATION (implies --wait).")
@option(
    "--conflict-exit-code",
    type=click.IntRange(0, 255),
    default=int(ExitCode.CONFLICT),
    show_default=True,
    metavar="N",
    help="Exit status when the key is taken or the wait times out.",
)
@option(
    "--replace",
    is_flag=True,
    help="If the key is taken, stop the running instance (the oldest) and run.",
)
@option(
    "--max-concurrent",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    metavar="N",
    help="Let up to N instances of the key run at once.",
)
@option(
    "--max-runtime",
    type=Duration(),
    help="Stop the job after DURATION (--signal, then SIGKILL after --kill-after); exit 124.",
)
@apply(*stop_options("--max-runtime and --replace send"))
@option(
    "-o",
    "--close",
    is_flag=True,
    help="Do not let the job inherit the lock (for jobs that leave daemons behind; "
    "if singlerun is killed, the key frees at once even though the job runs on).",
)
@lock_dir_option()
@option("-q", "--quiet", is_flag=True, help="No conflict message, no stale-lock warning.")
@option("-v", "--verbose", is_flag=True, help="Say what singlerun does.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_cmd(
    command: tuple[str, ...],
    name: str | None,
    group: str,
    wait: bool,
    wait_timeout: float | None,
    conflict_exit_code: int,
    replace: bool,
    max_concurrent: int,
    max_runtime: float | None,
    signal: int,
    kill_after: float,
    close: bool,
    lock_dir: str | None,
    quiet: bool,
    verbose: bool,
) -> int:
    """Run COMMAND unless another instance of its job is running.

    The key (GROUP, NAME) is locked for as long as COMMAND runs; a second
    instance with the same key exits 75 at once, or queues with --wait.
    """
    # Imported here, not at the top: --help, --version and usage errors need none of it.
    from singlerun import lockdir, runner
    from singlerun.keys import JobKey

    if not command:
        raise UsageError("no command given (see singlerun --help)")
    argv = list(command)
    key = JobKey.make(group, name) if name is not None else JobKey.for_command(group, argv)
    cfg = runner.RunConfig(
        command=argv,
        key=key,
        lock_dir=lock_dir or lockdir.default_lock_dir(),
        wait=wait or wait_timeout is not None,
        wait_timeout=wait_timeout,
        conflict_exit_code=conflict_exit_code,
        close=close,
        quiet=quiet,
        verbose=verbose,
        replace=replace,
        max_concurrent=max_concurrent,
        max_runtime=max_runtime,
        signal=signal,
        kill_after=kill_after,
    )
    return runner.run(cfg)


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


@cli.command("status", epilog=STATUS_EPILOG)
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


@cli.command("stop", epilog=STOP_EPILOG)
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


@cli.command("clean", epilog="\b\nExamples:\n  singlerun clean --dry-run\n  singlerun clean -g ci")
@group_option(None)
@option("--dry-run", is_flag=True, help="Only say what would be removed.")
@lock_dir_option()
def clean_cmd(group: str | None, dry_run: bool, lock_dir: str | None) -> int:
    """Remove the records of runs that died; print what was removed."""
    import json
    import time

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
                    f"job {record.job_id} (pid {record.pid}, started "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(record.started_at))})"
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


@cli.command("history", epilog=HISTORY_EPILOG)
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


def _say(message: str) -> None:
    if message:
        print(f"singlerun: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="singlerun", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        return ExitCode.SIGNAL_BASE + 2
    except click.ClickException as exc:
        _say(" ".join(exc.format_message().split()))
        return ExitCode.USAGE
    except SinglerunError as exc:
        _say(exc.message)
        return exc.exit_code
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The console script: main(), then exit at once.

    Everything is released by the time main() returns, so the interpreter's tear-down
    (about 20 ms with click and filelock loaded, a sixth of a whole run) is skipped.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)
