"""Every exit status singlerun can return besides the job's own (docs/CONTRACT.md §7, §5)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    NOT_STOPPED = 1  # `stop`: the job outlived --timeout
    STALE = 1  # `status -n` (LSB): "dead, but its record remains"
    USAGE = 2
    NOT_RUNNING = 3  # LSB: `status -n` / `stop` found nothing running
    NOT_PERMITTED = 4  # LSB: `stop` of another user's job
    CONFLICT = 75  # EX_TEMPFAIL: the key is taken
    TIMEOUT = 124  # --max-runtime, as timeout(1)
    INTERNAL = 125  # singlerun itself failed
    CANNOT_EXECUTE = 126
    NOT_FOUND = 127
    SIGNAL_BASE = 128  # 128+N: the job was killed by signal N
