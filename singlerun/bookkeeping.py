"""What a run writes besides its lock: the record rewrites between attempts, the stop
request it reads back, the history row and the metrics file. None of it ever fails a run:
trouble is one warning per run (one cause, such as a lock directory deleted under the job,
would otherwise show up in each of them), and the job's status stands."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from singlerun import say
from singlerun.errors import StoreError

if TYPE_CHECKING:
    from singlerun.lease import Lease, StopRequest
    from singlerun.record import Record
    from singlerun.store.protocol import Store


class Bookkeeping:
    def __init__(self, store: Store, keep: int | None) -> None:
        self.store = store
        self.keep = keep  # --history-size (None: history.KEEP)
        self.warned = False

    def warn(self, message: str) -> None:
        if self.warned:
            return
        self.warned = True
        where = self.store.location
        if self.store.kind == "files" and not os.path.isdir(where):
            message = f"the lock directory {where} disappeared while the job ran"
        say(f"warning: {message}; the run itself is unaffected")

    def publish(self, lease: Lease, record: Record) -> None:
        try:
            self.store.publish(lease, record)
        except StoreError as exc:
            self.warn(exc.message)

    def stop_request(self, lease: Lease) -> StopRequest | None:
        """Why a stopper ended the run, if one did; trouble reading it never costs the
        status."""
        try:
            return self.store.stop_request(lease)
        except (OSError, StoreError) as exc:
            self.warn(getattr(exc, "message", str(exc)))
            return None

    def history(
        self, record: Record, lease: Lease, code: int, outcome: str, stopped_by: str = ""
    ) -> None:
        """The run's row (and, once, the row of the dead run whose lock it reclaimed). Any
        error (sqlite3's, the file system's, or even loading sqlite3 under a memory limit)
        is one warning."""
        dead = lease.reclaimed.record if lease.reclaimed else None
        try:
            from singlerun.history import Run  # lazy: after the lock is released

            rows = [Run.of(record, time.time(), code, outcome, stopped_by)]
            if dead is not None:
                rows.append(Run.lost(dead))
                lease.reclaimed = None  # its row is written once, with the first attempt's
            self.store.add_runs(*rows, keep=self.keep)
        except StoreError as exc:
            self.warn(exc.message)
        except Exception as exc:
            self.warn(f"cannot write the run history ({exc})")

    def textfile(self, directory: str) -> None:
        """--textfile-dir: the metrics after this run's row."""
        from singlerun import metrics
        from singlerun.keys import KeyFilter

        try:
            metrics.write_textfile(directory, metrics.of_store(self.store, KeyFilter()))
        except StoreError as exc:
            self.warn(f"cannot write the metrics: {exc.message}")
        except OSError as exc:
            self.warn(f"cannot write the metrics to {directory}: {exc.strerror or exc}")
