"""How the command line is split into a subcommand and its arguments: `run` is the
default subcommand, store options may come before a subcommand's name, the operator's
subcommands load only when named, and the run's short options are read fast."""

from __future__ import annotations

from typing import Any

import click

# The operator's subcommands live in commands.py, imported only when one is asked for:
# a run (the common case, started by cron in storms) does not pay for building them.
OPERATOR_COMMANDS = ("status", "stop", "clean", "history", "check", "metrics")


STORE_OPTIONS = ("--lock-dir", "--backend")  # also accepted before a subcommand's name


def _store_options_first(args: list[str], names: list[str]) -> list[str]:
    """`singlerun --backend URL status` as `singlerun status --backend URL` (the order of
    `git -C DIR status`): store options given before a subcommand's name go to it. Without
    a subcommand name after them, the arguments are left as they are (a run)."""
    i = 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        if name not in STORE_OPTIONS:
            break
        i += 1 if "=" in args[i] else 2
    if 0 < i < len(args) and args[i] in names:
        return [args[i], *args[:i], *args[i + 1 :]]
    return args


class SinglerunGroup(click.Group):
    """`singlerun [OPTIONS] COMMAND...` means `singlerun run [OPTIONS] COMMAND...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        completing = ctx.resilient_parsing and not args  # shell completion of a subcommand
        names = [*self.list_commands(ctx), "--version"]
        args = _store_options_first(args, names)
        if not completing and (not args or args[0] not in names):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *OPERATOR_COMMANDS})

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """`singlerun --lo<TAB>`: the first word may be a run's option too (run is the
        default subcommand), and the store options may come before a subcommand's name."""
        items = super().shell_complete(ctx, incomplete)
        run = self.commands.get("run")
        if not incomplete.startswith("-") or run is None:
            return items
        from click.shell_completion import CompletionItem

        known = {item.value for item in items}
        for param in run.params:
            if isinstance(param, click.Option) and not param.hidden:
                for name in (*param.opts, *param.secondary_opts):
                    if name.startswith(incomplete) and name not in known:
                        known.add(name)
                        items.append(CompletionItem(name, help=param.help))
        return items

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in OPERATOR_COMMANDS and cmd_name not in self.commands:
            from singlerun.commands import COMMANDS
            from singlerun.monitoring_commands import COMMANDS as MONITORING

            for command in (*COMMANDS, *MONITORING):
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


class RunCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._long_forms(args))

    def _long_forms(self, args: list[str]) -> list[str]:
        """`-n x` as `--name x`: click tries every short option as a long one first, and the
        miss builds a "did you mean" list with difflib (~0.5 ms a run). Only whole, known
        short options before the command are rewritten; anything else is left to click."""
        options = [p for p in self.params if isinstance(p, click.Option)]
        takes_value = {o: not p.is_flag for p in options for o in p.opts}
        long_of = {o: p.opts[-1] for p in options for o in p.opts if len(o) == 2 < len(p.opts[-1])}
        out, i = list(args), 0
        while i < len(out) and out[i].startswith("-") and out[i] not in ("-", "--"):
            name = out[i].split("=", 1)[0] if out[i].startswith("--") else out[i]
            if name not in takes_value:
                break  # combined (-qv), attached (-nx) or unknown: click's to parse
            if name in long_of:
                out[i] = long_of[name]
            i += 2 if takes_value[name] and "=" not in out[i] else 1
        return out

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("singlerun", "[OPTIONS] [--] COMMAND [ARG]...")
        formatter.write_usage(
            "singlerun", "run|status|stop|clean|history|check|metrics [OPTIONS] ...", "   or: "
        )
