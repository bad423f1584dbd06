"""A terminating signal at any instant of a run — interpreter start-up, option parsing,
acquiring, waiting in the queue, the job, release, the history row — ends singlerun with
the right status, no traceback, and nothing left behind: no lock held, no record, no
queue ticket (issue 11 §7). SIGNAL_SEED replays a run."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.conftest import records, stop
from tests.torture.report import FIGURES, LONG, interpreter_start_up

ROUNDS = 150 if LONG else 12


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_at_any_instant_leaves_nothing_behind(sr, sig):
    seed = int(os.environ.get("SIGNAL_SEED", random.randrange(2**32)))
    print(f"SIGNAL_SEED={seed}")
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        holder = None
        if rng.random() < 0.3:  # then the signalled run waits in the queue
            holder, _ = sr.start_holder("-n", "k")
        # The job exits 3 at once, so late signals land in release and the history row.
        args = ["-n", "k", "--wait", "--", "sh", "-c", "exit 3"]
        p = sr.start(*args)
        time.sleep(rng.uniform(0, 0.12))  # start-up takes ~50 ms, the whole run ~70 ms
        p.send_signal(sig)
        _, err = p.communicate(timeout=15)
        FIGURES["signals at random instants"] += 1
        # 3: the job ended first; 128+N: reported; -N: died of it (SIGINT always, others
        # inside interpreter start-up, before singlerun has a handler).
        if interpreter_start_up(p.returncode, err):  # Python's own report, before our code
            FIGURES["interrupted inside interpreter start-up"] += 1
        else:
            assert p.returncode in (3, 128 + sig, -sig), (p.returncode, err, seed)
            assert "Traceback" not in err, (err, seed)
            assert all(line.startswith("singlerun: ") for line in err.splitlines()), (err, seed)
        if holder is not None:
            assert stop(holder) == 0
        assert records(sr.lock_dir) == "", seed
        assert not list(sr.lock_dir.glob("*.queue/[0-9]*")), seed  # no ticket left
        r = sr.run("-n", "k", "--", "true")
        assert r.returncode == 0, (r.stderr, seed)
