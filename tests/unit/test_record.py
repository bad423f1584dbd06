import pytest

from singlerun.record import Record, encode, parse

REC = Record(
    job_id="01J",
    group="g",
    name="n",
    pid=42,
    host="h",
    user="u",
    started_at=1000.5,
    command=["sleep", "1"],
    pid_started=999.0,
    child_pid=43,
    token="01J",
)


def test_round_trip():
    assert parse(encode(REC)) == REC


def test_minimal_record_gets_defaults():
    data = (
        b'singlerun-record 1\n{"job_id":"x","group":"g","name":"n","pid":1,"host":"h",'
        b'"user":"u","started_at":1}'
    )
    rec = parse(data)
    assert rec is not None and rec.command == [] and rec.child_pid is None


def test_unknown_fields_are_ignored():
    data = encode(REC).replace(b'{"job_id"', b'{"future":[1,2],"job_id"')
    assert parse(data) == REC


@pytest.mark.parametrize("cut", range(0, len(encode(REC)) - 1, 7))
def test_truncated_records_are_none(cut):
    assert parse(encode(REC)[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 100,
        b"garbage",
        b"singlerun-record 2\n{}",
        b"singlerun-record x\n{}",
        b"singlerun-record 1\n[]",
        b'singlerun-record 1\n{"pid": 1}',
        b"\xff\xfe\n\x00",
        encode(REC).replace(b'"pid":42', b'"pid":"42"'),
        encode(REC).replace(b'"pid":42', b'"pid":true'),
        encode(REC).replace(b'["sleep","1"]', b"[1]"),
        b"singlerun-record 1\n" + b"[" * 100000,
    ],
)
def test_malformed_records_are_none(data):
    assert parse(data) is None
