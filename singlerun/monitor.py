"""`singlerun check`: the monitoring-plugin verdict on keys (Nagios, Icinga, Sensu, Zabbix,
check_mk all run plugins so): exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one status line,
then performance data after `|` (the Monitoring Plugins Development Guidelines). The figures it
judges are keystats.KeyStats."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from singlerun.durations import format_age

if TYPE_CHECKING:
    from singlerun.keys import JobKey
    from singlerun.keystats import KeyStats
    from singlerun.store.protocol import KeyState


OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
FAILED = ("failed", "killed", "lost", "timeout")  # a last run that ended so is CRITICAL


@dataclass(frozen=True)
class Thresholds:
    max_age: float  # CRITICAL without a success this recent
    warn_age: float | None = None
    max_duration: float | None = None  # CRITICAL while a run is older than this
    warn_duration: float | None = None


@dataclass
class Verdict:
    key: JobKey
    code: int = OK
    reasons: list[str] = field(default_factory=list)
    success_age: float | None = None  # seconds since the last success ended
    running_for: float | None = None  # seconds the oldest running instance has run
    last_duration: float | None = None

    def worse(self, code: int, reason: str) -> None:
        self.code = max(self.code, code)
        self.reasons.append(reason)

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.key.group,
            "name": self.key.name,
            "status": NAMES[self.code],
            "code": self.code,
            "reasons": self.reasons,
            "last_success_age_s": _round(self.success_age),
            "running_s": _round(self.running_for),
            "last_duration_s": _round(self.last_duration),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def judge(key: JobKey, state: KeyState | None, stats: KeyStats | None, t: Thresholds) -> Verdict:
    now = time.time()
    v = Verdict(key)
    last = stats.last if stats else None
    success = stats.last_success if stats else None
    if success is not None:
        v.success_age = max(0.0, now - (success.ended_at or success.started_at))
    if last is not None and last.ended_at is not None:
        v.last_duration = max(0.0, last.ended_at - last.started_at)
    if state is not None and state.holders:
        v.running_for = max(0.0, now - min(r.started_at for r in state.holders))
    if v.success_age is None:
        v.worse(CRITICAL, "no successful run in the history")
    elif v.success_age > t.max_age:
        v.worse(CRITICAL, f"last success {format_age(v.success_age)} ago")
    elif t.warn_age is not None and v.success_age > t.warn_age:
        v.worse(WARNING, f"last success {format_age(v.success_age)} ago")
    if last is not None and last.outcome in FAILED:
        status = "" if last.exit_status is None else f" (exit {last.exit_status})"
        ago = format_age(now - (last.ended_at or last.started_at))
        v.worse(CRITICAL, f"last run {last.outcome}{status} {ago} ago")
    if v.running_for is not None:
        running = f"running for {format_age(v.running_for)}"
        if t.max_duration is not None and v.running_for > t.max_duration:
            v.worse(CRITICAL, running)
        elif t.warn_duration is not None and v.running_for > t.warn_duration:
            v.worse(WARNING, running)
    if state is not None and state.stale and not state.holders:
        v.worse(CRITICAL, "stale: its last run died without releasing the key")
    return v


def _label(key: JobKey, what: str) -> str:
    # Perfdata labels are single-quoted; a quote inside is doubled, and `=` may not appear.
    text = f"{key} {what}".replace("=", "_").replace("'", "''")
    return f"'{text}'"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def perfdata(verdicts: list[Verdict], t: Thresholds) -> str:
    out = []
    for v in verdicts:
        age = "U" if v.success_age is None else f"{v.success_age:.0f}s"  # U: unknown
        out.append(f"{_label(v.key, 'age')}={age};{_num(t.warn_age)};{_num(t.max_age)};0")
        if v.last_duration is not None:
            out.append(f"{_label(v.key, 'last_duration')}={v.last_duration:.3f}s;;;0")
        running = 0.0 if v.running_for is None else v.running_for
        limits = f"{_num(t.warn_duration)};{_num(t.max_duration)}"
        out.append(f"{_label(v.key, 'running')}={running:.0f}s;{limits};0")
    return " ".join(out)


def status_line(verdicts: list[Verdict], t: Thresholds) -> tuple[int, str]:
    """The exit code and the one line a plugin prints."""
    if not verdicts:
        return UNKNOWN, "SINGLERUN UNKNOWN - no such keys"
    code = max(v.code for v in verdicts)
    bad = [v for v in verdicts if v.code != OK]
    if bad:
        text = "; ".join(f"{v.key}: {', '.join(v.reasons)}" for v in bad)
    elif len(verdicts) == 1:
        age = verdicts[0].success_age or 0.0
        text = f"{verdicts[0].key}: last success {format_age(age)} ago"
    else:
        text = f"{len(verdicts)} keys OK"
    text = " ".join(text.replace("|", "/").split())  # `|` would start the perfdata
    return code, f"SINGLERUN {NAMES[code]} - {text} | {perfdata(verdicts, t)}"
