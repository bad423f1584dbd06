"""What one run was asked to do: the `run` subcommand's options, decided."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

import signal
from typing import TYPE_CHECKING, Any, NamedTuple

from singlerun.exitcodes import ExitCode
from singlerun.keys import JobKey

if TYPE_CHECKING:
    from singlerun.attempts import Policy


class RunConfig(NamedTuple):
    """Immutable: a NamedTuple, cheap to create at start-up (record.Record)."""

    command: list[str]
    key: JobKey
    lock_dir: str | None = None
    backend: str | None = None
    lease_ttl: float = 30.0
    keep_running_without_lease: bool = False  # --on-lease-lost continue
    scrubbed: frozenset[str] = frozenset()  # option variables the job does not inherit
    retry: "Policy | None" = None  # --retry / --respawn
    wait: bool = False
    wait_timeout: float | None = None
    conflict_exit_code: int = ExitCode.CONFLICT
    close: bool = False
    quiet: bool = False
    verbose: bool = False
    replace: bool = False
    max_concurrent: int = 1
    max_runtime: float | None = None
    signal: int = signal.SIGTERM
    kill_after: float = 10.0
    history_size: int | None = None  # --history-size (None: history.KEEP)
    textfile_dir: str | None = None  # --textfile-dir: node_exporter's textfile collector
    began: float = 0.0  # monotonic time the run began: --wait-timeout counts from it

    @property
    def deadline(self) -> float | None:
        """When --wait-timeout runs out (None: never)."""
        return None if self.wait_timeout is None else self.began + self.wait_timeout

    def job_env(self, job_id: str, attempt: int) -> dict[str, str]:
        """The job's environment, but for what its grant adds (Store.job_env)."""
        import os

        return {
            **{k: v for k, v in os.environ.items() if k not in self.scrubbed},
            "SINGLERUN_JOB_ID": job_id,
            "SINGLERUN_JOB_NAME": self.key.name,
            "SINGLERUN_JOB_GROUP": self.key.group,
            **({"SINGLERUN_ATTEMPT": str(attempt)} if self.retry else {}),
        }

    @classmethod
    def from_options(cls, argv: list[str], scrubbed: frozenset[str], **opts: Any) -> "RunConfig":
        """The `run` subcommand's options, by name; those that are not one field each are
        turned into the field they decide."""
        name, group = opts.pop("name"), opts.pop("group")
        key = JobKey.make(group, name) if name is not None else JobKey.for_command(group, argv)
        tries = [opts.pop(o) for o in ("retry", "retry_delay", "retry_max_delay", "respawn")]
        keep_running = opts.pop("on_lease_lost") == "continue"
        opts["wait"] = opts["wait"] or opts["wait_timeout"] is not None
        import time

        return cls(
            command=argv,
            key=key,
            scrubbed=scrubbed,
            retry=_policy(*tries),
            keep_running_without_lease=keep_running,
            began=time.monotonic(),
            **opts,
        )


def _policy(retries: int, delay: float, max_delay: float, respawn: bool) -> "Policy | None":
    if not retries and not respawn:
        return None
    from singlerun.attempts import Policy  # lazy: most runs have one attempt

    return Policy(retries, respawn, delay, max(delay, max_delay))
