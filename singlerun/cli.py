"""The command line (click only): parse options into a config, call one function per
subcommand, and turn every error into one `singlerun: ...` line and its exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

import click
import click.decorators

from singlerun import ERROR, WARNING, __version__, say
from singlerun.cligroup import OPERATOR_COMMANDS, RunCommand, SinglerunGroup
from singlerun.errors import SinglerunError, SpawnError, UsageError
from singlerun.exitcodes import ExitCode
from singlerun.history import KEEP
from singlerun.keys import DEFAULT_GROUP, MAX_SLOTS
from singlerun.options import (
    Duration,
    apply,
    group_option,
    option,
    stop_options,
    store_options,
)

RUN_EPILOG = """\b
Examples:
  singlerun -n nightly -g backups -- ./backup.sh --full
  singlerun --wait-timeout 10m -n deploy -- ./deploy.sh     # queue, at most 10 minutes
  singlerun --replace -n preview -- ./build-preview.sh      # cancel the running one
  singlerun --max-runtime 1h -n report -- ./report.sh       # like timeout(1): exit 124
  singlerun -- ./sync.sh          # key derived from the command, like run-one
  singlerun --retry 3 -n flaky -- ./flaky-step.sh          # again on failure, key held
  singlerun --respawn -n worker -- ./worker                  # like keep-one-running
  singlerun --backend redis://locks:6379/0 -n deploy -- ./deploy.sh   # across machines
  singlerun --backend postgresql://locks@db/ops -n report -- ./report.sh  # or PostgreSQL
\b
Subcommands (singlerun COMMAND --help; --lock-dir and --backend may come before COMMAND):
  run       the same as the form above
  status    what is running, waiting, stale; the last run of each key
  stop      stop a running job
  clean     remove stale records; with --idle D, forget keys unused for D
  history   finished runs, newest first (--summary: one row per key, with a chart)
  check     monitoring plugin (Nagios, Icinga): did the job succeed within --max-age?
  metrics   the Prometheus text format; --textfile-dir writes it at every run's end
\b
Exit status: the command's own; 128+N if it was killed by signal N; 75 if the key is
taken (--conflict-exit-code); 124 --max-runtime reached; 125 singlerun failed (lock
directory, backend unreachable, lease lost); 126 command not executable; 127 command not
found; 2 usage error (also an empty --backend). After the job's SIGINT or SIGQUIT,
singlerun dies of it too.
\b
SINGLERUN_DEBUG=1: after an "internal error" (a bug), print the traceback too.
"""


# click ships no message catalogue, so its gettext calls only ever return their text; the
# first one (the --version and --help options' help texts) imports `locale`: 0.7 ms of every
# run's start-up (issue 21).
click.decorators._ = lambda message: message  # type: ignore[attr-defined]

INHERITED_ENVVARS = {
    "SINGLERUN_LOCK_DIR",
    "SINGLERUN_BACKEND",
    "SINGLERUN_QUIET",
    "SINGLERUN_VERBOSE",
}


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
@group_option(DEFAULT_GROUP, "Job group.")
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
    type=click.IntRange(1, MAX_SLOTS),
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
    "--retry",
    type=click.IntRange(0, 1_000_000),
    default=0,
    metavar="N",
    help="If the command fails, run it again, up to N more times, holding the key.",
)
@option(
    "--retry-delay",
    type=Duration(),
    default="1s",
    show_default=True,
    help="The first pause before another attempt; it doubles each time (±20% jitter).",
)
@option(
    "--retry-max-delay",
    type=Duration(),
    default="5m",
    show_default=True,
    help="The longest pause between attempts.",
)
@option(
    "--respawn",
    is_flag=True,
    help="Keep the command running: start it again whenever it exits, holding the key, "
    "until singlerun is signalled or stopped.",
)
@option(
    "-o",
    "--close",
    is_flag=True,
    help="Do not let the job inherit the lock (for jobs that leave daemons behind; "
    "if singlerun is killed, the key frees at once even though the job runs on).",
)
@apply(*store_options())
@option(
    "--lease-ttl",
    type=Duration(min_seconds=1.0, max_seconds=86400.0),
    default="30s",
    show_default=True,
    help="With --backend: the lease's time to live; singlerun renews it while the job runs.",
)
@option(
    "--on-lease-lost",
    type=click.Choice(["stop", "continue"]),
    default="stop",
    show_default=True,
    help="With --backend, if the lease cannot be kept: stop the job (exit 125), or let it "
    "run on with a warning.",
)
@option(
    "--history-size",
    type=click.IntRange(100, 10_000_000),
    default=KEEP,
    show_default=True,
    metavar="N",
    help="Keep the newest N finished runs in the history (the lock directory's ledger, "
    "the Redis stream, the PostgreSQL table).",
)
@option(
    "--textfile-dir",
    metavar="DIR",
    help="At the end of the run, write every key's metrics (as `singlerun metrics` prints "
    "them) atomically to DIR/singlerun.prom, for node_exporter's textfile collector.",
)
@option("-q", "--quiet", is_flag=True, help="No conflict message, no stale-lock warning.")
@option("-v", "--verbose", is_flag=True, help="Say what singlerun does.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_cmd(command: tuple[str, ...], **opts: Any) -> int:
    """Run COMMAND unless another instance of its job is running.

    The key (GROUP, NAME) is locked for as long as COMMAND runs; a second
    instance with the same key exits 75 at once, or queues with --wait.
    """
    # Imported here, not at the top: --help, --version and usage errors need none of it.
    from singlerun import runner
    from singlerun.runconfig import RunConfig

    if not command:
        raise UsageError("no command given (see singlerun --help)")
    argv = list(command)
    # The job does not inherit this run's key and per-run options (docs/CONTRACT.md §2): a
    # singlerun inside it is configured by its own arguments. Store and output options are
    # kept.
    params = click.get_current_context().command.params
    per_run = {p.envvar for p in params if isinstance(p.envvar, str)} - INHERITED_ENVVARS
    cfg = RunConfig.from_options(argv, frozenset(per_run), **opts)
    try:
        return runner.run(cfg)
    except SpawnError as exc:
        if exc.exit_code == ExitCode.NOT_FOUND and (hint := _subcommand_hint(argv[0])):
            exc.message += f"; did you mean '{hint}'?"
        raise


def _subcommand_hint(program: str) -> str | None:
    """`singlerun stauts`: a misspelt subcommand runs as a command, which is not found."""
    import difflib

    if "/" in program:
        return None
    close = difflib.get_close_matches(program, ["run", *OPERATOR_COMMANDS], n=1, cutoff=0.6)
    return f"singlerun {close[0]}" if close else None


def _say(message: str, level: int = ERROR) -> None:
    if message:  # a conflict under -q has none
        sys.stdout.flush()
        say(message, level)


def _settle() -> None:
    """The outcome is decided: a terminating signal that comes now (a run's handler raises
    Interrupted from any line) must not cut the report short with a traceback."""
    signals = sys.modules.get("singlerun.signals")  # loaded by a run only
    if signals is not None:
        signals.settle()


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except SinglerunError as exc:  # Interrupted, in the instant before _settle() took hold
        return exc.exit_code


def _main(argv: list[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name="singlerun", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        return ExitCode.SIGNAL_BASE + signal.SIGINT
    except click.ClickException as exc:
        _settle()
        _say(" ".join(exc.format_message().split()))
        return ExitCode.USAGE
    except SinglerunError as exc:
        _settle()
        from singlerun.busy import LockBusy  # loaded by a conflict already

        _say(exc.message, WARNING if isinstance(exc, LockBusy) else ERROR)
        return exc.exit_code
    except Exception as exc:  # a bug: one line, exit 125 (docs/CONTRACT.md §7)
        _settle()
        detail = f": {exc}" if str(exc) else ""
        if os.environ.get("SINGLERUN_DEBUG", "") not in ("", "0"):
            import traceback

            sys.stdout.flush()
            traceback.print_exc()
            hint = "the traceback is above; please include it in a bug report"
        else:
            hint = "SINGLERUN_DEBUG=1 prints the traceback, for a bug report"
        _say(f"internal error: {type(exc).__name__}{detail} ({hint})")
        return ExitCode.INTERNAL
    _settle()
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The console script: main(), then exit at once.

    Everything is released by the time main() returns, so the interpreter's tear-down
    (about 20 ms with click loaded, a sixth of a whole run) is skipped.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    signals = sys.modules.get("singlerun.signals")  # loaded by a run only
    if signals is not None:
        signals.die_of_signal(code)
    os._exit(code)
