"""A run's row read back from a journal, a stream or a table is data others can write: a row
with a field of the wrong type or an impossible number is skipped, never fatal (issue 18)."""

import json

import pytest

from singlerun.history import Run, journal_line, parse_journal

GOOD = Run("01J", "g", "n", "h", 42, 1000.0, 1001.5, 0, "ok", '["true"]', 1, "01J")


def _line(**changes: object) -> bytes:
    row = dict(zip(GOOD._fields, json.loads(journal_line(GOOD)), strict=True))
    row.update(changes)
    return json.dumps(list(row.values())).encode()


def test_a_row_reads_back_as_written():
    assert parse_journal(journal_line(GOOD)) == [GOOD]
    lost = Run("01K", "g", "n", "h", 42, 1000.0, None, None, "lost", "[]")
    assert parse_journal(journal_line(lost)) == [lost]


@pytest.mark.parametrize(
    "changes",
    [
        {"group": ["a", "list"]},
        {"name": None},
        {"host": 7},
        {"pid": "42"},
        {"pid": True},
        {"started_at": "yesterday"},
        {"started_at": 1e300},
        {"ended_at": "later"},
        {"ended_at": -1e200},
        {"exit_status": 1.5},
        {"outcome": {"ok": 1}},
        {"command": ["true"]},
        {"attempt": "2"},
        {"run_id": 0},
    ],
)
def test_a_forged_field_drops_its_row_and_no_other(changes):
    data = journal_line(GOOD) + _line(**changes) + b"\n" + journal_line(GOOD)
    assert parse_journal(data) == [GOOD, GOOD]


@pytest.mark.parametrize("line", [b"[]", b"{}", b"12", b'"text"', b"[1,2,3]", b"\xff\xfe", b"["])
def test_a_line_of_another_shape_is_skipped(line):
    assert parse_journal(line + b"\n" + journal_line(GOOD)) == [GOOD]
