"""`singlerun history --summary`: one row per key (runs, success rate, p50/p95 duration,
last success) and an inline chart of its recent runs, to be looked at rather than read.

Each recent run is one character, oldest first: a block as tall as its duration (relative
to the longest shown) for a success, a cross (`x` in ASCII) for any other outcome. Unicode
blocks on a UTF-8 terminal, ASCII otherwise; colour only on a terminal, never with
NO_COLOR."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from singlerun.durations import format_age, rfc3339

if TYPE_CHECKING:
    from singlerun.history import Run

RECENT = 20  # runs in the chart
_BLOCKS = "▁▂▃▄▅▆▇█"
_ASCII = "._-=+*#%"
_GREEN, _RED, _RESET = "\033[32m", "\033[31m", "\033[0m"


def _duration(run: Run) -> float | None:
    return None if run.ended_at is None else max(0.0, run.ended_at - run.started_at)


def _percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))]


def chart(runs: list[Run], *, unicode: bool, colour: bool) -> str:
    """`runs` oldest first."""
    ramp, fail = (_BLOCKS, "×") if unicode else (_ASCII, "x")
    longest = max((d for r in runs if (d := _duration(r)) is not None), default=0.0)
    out = []
    for run in runs:
        d = _duration(run)
        if run.outcome == "ok":
            level = 0 if not longest or d is None else round(d / longest * (len(ramp) - 1))
            glyph, paint = ramp[level], _GREEN
        else:
            glyph, paint = fail, _RED
        out.append(f"{paint}{glyph}{_RESET}" if colour else glyph)
    return "".join(out)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else format_age(seconds)


def render(runs: list[Run]) -> str:
    """`runs` newest first, as Store.runs returns them."""
    from singlerun.render import safe

    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    unicode = encoding == "utf8"
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.group, run.name), []).append(run)
    header = ("KEY", "RUNS", "OK%", "P50", "P95", "LAST SUCCESS", f"LAST {RECENT}")
    rows = []
    for (group, name), key_runs in sorted(by_key.items()):
        durations = [d for r in key_runs if (d := _duration(r)) is not None]
        ok = [r for r in key_runs if r.outcome == "ok"]
        last_ok = max(ok, key=lambda r: r.started_at, default=None)
        success = "-" if last_ok is None else rfc3339(last_ok.ended_at or last_ok.started_at)
        rows.append(
            (
                safe(f"{group}/{name}"),
                str(len(key_runs)),
                f"{100 * len(ok) / len(key_runs):.0f}",
                _age(_percentile(durations, 50)),
                _age(_percentile(durations, 95)),
                success,
                chart(key_runs[:RECENT][::-1], unicode=unicode, colour=colour),
            )
        )
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"
