"""The file store's view of all its keys, for `status` and `clean`, taking no lock.

Which slots are held comes from /proc/locks (kernel truth, no probing); records and queue
tickets say who holds and who waits.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from singlerun.keys import JobKey
from singlerun.record import MAX_SIZE, parse
from singlerun.store.files import proclocks, queue
from singlerun.store.protocol import KeyState

if TYPE_CHECKING:
    from singlerun.store.files.lockdir import LockDir


def scan(lock_dir: LockDir) -> list[KeyState]:
    """Every key with files in `lock_dir`: held and free slots, records, live waiters."""
    held = proclocks.held_inodes(lock_dir.fd)
    slots: dict[str, dict[int, str]] = {}  # stem -> slot -> "held" | "free"
    records: set[str] = set()
    queues: list[str] = []
    with os.scandir(lock_dir.fd) as entries:
        for entry in entries:
            base, dot, suffix = entry.name.rpartition(".")
            stem, _, slot_text = base.partition("@")
            if (
                not dot
                or not stem
                or (slot_text and not (slot_text.isascii() and slot_text.isdigit()))
            ):
                continue
            if suffix == "lock" and entry.is_file(follow_symlinks=False):
                # Without /proc/locks, a lock is taken as held (fail closed).
                on = held is None or entry.inode() in held
                slots.setdefault(stem, {})[int(slot_text or 0)] = "held" if on else "free"
            elif suffix == "rec":
                records.add(entry.name)
            elif suffix == "queue" and not slot_text and entry.is_dir(follow_symlinks=False):
                queues.append(stem)
    states = {stem: KeyState(stem, JobKey.from_stem(stem)) for stem in (*slots, *queues)}
    for stem, by_slot in slots.items():
        state = states[stem]
        for slot, how in sorted(by_slot.items()):
            rec_name = f"{stem}@{slot}.rec" if slot else f"{stem}.rec"
            found = lock_dir.read(rec_name, MAX_SIZE) if rec_name in records else None
            data = found[0] if found else None
            record = parse(*found) if found and found[0] else None
            if how == "held":
                if record is None:
                    state.unrecorded += 1
                else:
                    state.holders.append(record)
            elif data is not None:
                state.stale.append(record)
    for stem in queues:
        with contextlib.suppress(OSError), queue.opened(lock_dir, f"{stem}.queue") as qfd:
            if qfd is not None:
                states[stem].waiters = [r for r, live in queue.waiters(qfd) if live and r]
    for stem in queues:  # an empty queue of a key with no lock file (forgotten): not a key
        if stem not in slots and not states[stem].waiters:
            del states[stem]
    return [state.named() for state in states.values()]
