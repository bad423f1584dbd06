"""Options shared by the subcommands: types, and one declaration per option with its
SINGLERUN_<OPTION> environment variable (docs/CONTRACT.md §8)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from singlerun.durations import MAX_DURATION, parse_duration

Decorator = Callable[[Any], Any]

if TYPE_CHECKING:  # click 8.5 made ParamType generic; older versions cannot subscript it
    _FloatType = click.ParamType[float, Any]
    _IntType = click.ParamType[int, Any]
else:
    _FloatType = _IntType = click.ParamType


class Duration(_FloatType):
    name = "DURATION"

    def __init__(self, min_seconds: float = 0.0, max_seconds: float = MAX_DURATION) -> None:
        self.min_seconds, self.max_seconds = min_seconds, max_seconds

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not self.min_seconds <= seconds <= self.max_seconds:
            self.fail(
                f"{value!r} is out of range ({self.min_seconds:g}s to {self.max_seconds:g}s)",
                param,
                ctx,
            )
        return seconds


class Signal(_IntType):
    name = "SIGNAL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return signal_number(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def option(*decls: str, **kw: Any) -> Decorator:
    """A click option whose environment variable is SINGLERUN_<OPTION> (docs/CONTRACT.md §8)."""
    long = next(d for d in decls if d.startswith("--"))
    envvar = "SINGLERUN_" + long[2:].upper().replace("-", "_")
    return click.option(*decls, envvar=envvar, show_envvar=True, **kw)


def store_options() -> list[Decorator]:
    """Where the locks live: every subcommand takes these itself (docs/CONTRACT.md §5)."""
    return [
        option(
            "--lock-dir",
            metavar="DIR",
            help="Directory of lock files, records and the history "
            "[default: /tmp/singlerun-UID, whatever the environment].",
        ),
        option(
            "--backend",
            metavar="URL",
            callback=_not_empty,
            help="A network store instead of the lock directory, for jobs single across "
            "machines: redis://[USER:PASSWORD@]HOST[:PORT][/DB], rediss://… (TLS), "
            "unix://PATH?db=N; ?prefix=P (default singlerun:), ?connect_timeout=D (5s); "
            "the password may come from REDISCLI_AUTH. Or postgresql://[USER@]HOST[:PORT]/DB "
            "(also postgres://), with libpq's parameters (?sslmode=, ?connect_timeout=SECONDS, "
            "default 5) and ?schema=S (default singlerun); the password may come from the "
            "URL, PGPASSWORD or ~/.pgpass.",
        ),
    ]


def _not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An empty --backend (or SINGLERUN_BACKEND= left empty by a missing CI secret) must not
    quietly mean the local lock directory: cross-host exclusion would be gone unnoticed.
    click ignores an empty environment variable, so it is looked at here."""
    import os

    given = value if value is not None else os.environ.get("SINGLERUN_BACKEND")
    if given is not None and not given.strip():
        where = "SINGLERUN_BACKEND is set but" if value is None else "the URL is"
        raise click.BadParameter(
            f"{where} empty: give a URL, or leave the option out for the local lock directory",
            ctx,
            param,
        )
    return value


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


def signal_number(text: str) -> int:
    """TERM, SIGTERM, term or 15 -> 15; ValueError for anything else."""
    name = text.strip().upper()
    if name.isdigit() and int(name) in signal.valid_signals():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None
