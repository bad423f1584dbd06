"""A finished run's row, and its codec: one line of JSON, the format every store keeps
(the lock directory's journal, the Redis stream, the PostgreSQL table)."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

from typing import TYPE_CHECKING, NamedTuple

from singlerun.compactjson import dumps

if TYPE_CHECKING:
    from singlerun.record import Record

KEEP = 10_000  # finished runs a history keeps unless --history-size says otherwise


class Run(NamedTuple):
    """Immutable, as a NamedTuple (cheap to create at start-up, like record.Record)."""

    job_id: str
    group: str
    name: str
    host: str
    pid: int
    started_at: float
    ended_at: float | None  # None: lost, its end unknown
    exit_status: int | None  # None: lost
    outcome: str
    command: str  # JSON array
    attempt: int = 1  # --retry/--respawn: each attempt is a row
    run_id: str = ""  # the job ID of the run the attempt belongs to
    invocation_id: str = ""  # the systemd unit's run, if systemd started it
    stopped_by: str = ""  # USER@HOST of the `stop` or `--replace` that ended it, if one did

    @classmethod
    def of(
        cls,
        record: "Record",
        ended_at: float | None,
        exit_status: int | None,
        outcome: str,
        stopped_by: str = "",
    ) -> "Run":
        """The row of the run `record` names."""
        return cls(
            record.job_id,
            record.group,
            record.name,
            record.host,
            record.pid,
            record.started_at,
            ended_at,
            exit_status,
            outcome,
            dumps(record.command),
            record.attempt,
            record.run_id or record.job_id,
            record.invocation_id,
            stopped_by,
        )

    @classmethod
    def lost(cls, record: "Record") -> "Run":
        """The row of a run whose singlerun died: its end and status are unknown."""
        return cls.of(record, None, None, "lost")

    @property
    def guessed(self) -> bool:
        """Written by the run that reclaimed this one's lock (`lost`), not by its own
        singlerun. On a network store that singlerun may only have been frozen or cut off,
        and its own row, if it comes, says what happened: it wins."""
        return self.outcome == "lost" and self.ended_at is None

    @property
    def argv(self) -> list[str]:
        import json

        argv = json.loads(self.command)
        return [str(a) for a in argv] if isinstance(argv, list) else []


def journal_line(run: Run) -> bytes:
    """A run as one line of JSON (the journal's, and the Redis stream's, format)."""
    return dumps(list(run)).encode() + b"\n"


def sound(run: Run) -> bool:
    """Every field of the type singlerun writes, and every number finite: a row is data
    from a file or a server that others can write (issue 18), and one bad row must not
    make `status`, `history` or `check` fail for everyone."""
    import math

    def number(v: object, none: bool = False) -> bool:
        if v is None:
            return none
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v: object, none: bool = False) -> bool:
        return (none and v is None) or (isinstance(v, int) and not isinstance(v, bool))

    texts = (
        *(run.job_id, run.group, run.name, run.host, run.outcome, run.command, run.run_id),
        *(run.invocation_id, run.stopped_by),
    )
    return (
        all(isinstance(t, str) for t in texts)
        and integer(run.pid)
        and number(run.started_at)
        and number(run.ended_at, none=True)
        and integer(run.exit_status, none=True)
        and integer(run.attempt)
        and abs(run.started_at) < 1e11  # seconds: within the next 3,000 years
        and (run.ended_at is None or abs(run.ended_at) < 1e11)
    )


def parse_journal(data: bytes) -> list[Run]:
    """The rows in a journal's bytes; a torn, foreign or forged line is skipped, never
    fatal."""
    import json  # lazy: a run only appends

    runs = []
    for line in data.splitlines():
        try:
            values = json.loads(line)
            run = Run(*values)
        except (ValueError, TypeError, RecursionError):
            continue
        if sound(run):
            runs.append(run)
    return runs
