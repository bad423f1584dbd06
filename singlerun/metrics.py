"""`singlerun metrics`: every key's history and state in the Prometheus text exposition
format (0.0.4, which OpenMetrics parsers read too), and the atomic write of it into
node_exporter's textfile-collector directory at the end of a run (`--textfile-dir`)."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from singlerun.keys import KeyFilter
    from singlerun.keystats import KeyStats
    from singlerun.store.protocol import KeyState, Store

TEXTFILE = "singlerun.prom"  # the file --textfile-dir writes

# name, type, help: one family each; names follow Prometheus' rules (base units, _total).
_FAMILIES = (
    ("singlerun_last_start_timestamp_seconds", "gauge", "Start of the last finished run."),
    ("singlerun_last_success_timestamp_seconds", "gauge", "End of the last successful run."),
    ("singlerun_last_exit_status", "gauge", "Exit status of the last finished run."),
    ("singlerun_last_duration_seconds", "gauge", "Duration of the last finished run."),
    ("singlerun_runs_total", "counter", "Finished runs by outcome, as far as the history goes."),
    ("singlerun_running", "gauge", "Instances running now."),
    ("singlerun_waiting", "gauge", "Instances queued now."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(group: str, name: str, **more: str) -> str:
    pairs = {"group": group, "name": name, **more}
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(states: list[KeyState], stats: dict[tuple[str, str], KeyStats], only: KeyFilter) -> str:
    from singlerun.keys import JobKey

    live = {s.key: s for s in states if s.key is not None and only.matches(s.key)}
    keys = sorted({*((k.group, k.name) for k in live), *stats})
    samples: dict[str, list[str]] = {family: [] for family, _, _ in _FAMILIES}
    for group, name in keys:
        labels = _labels(group, name)
        st = stats.get((group, name))
        last = st.last if st else None
        if last is not None:
            samples["singlerun_last_start_timestamp_seconds"].append(
                f"{labels} {_num(last.started_at)}"
            )
            if last.exit_status is not None:
                samples["singlerun_last_exit_status"].append(f"{labels} {last.exit_status}")
            if last.ended_at is not None:
                duration = max(0.0, last.ended_at - last.started_at)
                samples["singlerun_last_duration_seconds"].append(f"{labels} {_num(duration)}")
        success = st.last_success if st else None
        if success is not None:
            ended = success.ended_at or success.started_at
            samples["singlerun_last_success_timestamp_seconds"].append(f"{labels} {_num(ended)}")
        for outcome, count in sorted(((st.outcomes or {}) if st else {}).items()):
            by = _labels(group, name, outcome=outcome)
            samples["singlerun_runs_total"].append(f"{by} {count}")
        state = live.get(JobKey(group, name))
        running = len(state.holders) + state.unrecorded if state else 0
        samples["singlerun_running"].append(f"{labels} {running}")
        samples["singlerun_waiting"].append(f"{labels} {len(state.waiters) if state else 0}")
    out = []
    for family, kind, help_text in _FAMILIES:
        out += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        out += [f"{family}{sample}" for sample in samples[family]]
    return "\n".join(out) + "\n"


def of_store(store: Store, only: KeyFilter) -> str:
    return render(store.inspect(), store.key_stats(only), only)


def write_textfile(directory: str, text: str) -> None:
    """Write DIRECTORY/singlerun.prom atomically: a temporary file in the same directory
    (node_exporter ignores names not ending in .prom), then a rename over the old one, so
    the collector never reads half a file. Raises OSError."""
    tmp = os.path.join(directory, f".{TEXTFILE}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # the collector runs as another user; no command line is here
        os.rename(tmp, os.path.join(directory, TEXTFILE))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
