"""A stop request is data from a store anyone with the server's password can write:
parsed strictly, and what it names (a signal, a delay) is bounded."""

import signal

import pytest

from singlerun.durations import MAX_DURATION
from singlerun.lease import StopRequest


@pytest.mark.parametrize(
    "request_",
    [
        StopRequest("stopped", "01JOB"),
        StopRequest("replaced", "01JOB", signal.SIGKILL, 0.0),
        StopRequest("stopped", "01JOB", signal.SIGTERM, MAX_DURATION),
        StopRequest("stopped", "01JOB", signal.SIGTERM, 10.0, "ops@web-1.example"),
    ],
)
def test_what_a_stopper_writes_parses_back(request_):
    assert StopRequest.parse(request_.encode()) == request_
    assert StopRequest.parse(request_.encode().encode()) == request_  # bytes from a server


def test_the_file_stores_two_word_note_parses():
    assert StopRequest.parse(b"replaced 01JOB\n") == StopRequest("replaced", "01JOB")


@pytest.mark.parametrize(
    "data",
    [
        None,
        17,
        b"",
        "killed 01JOB",  # a reason no stopper writes
        "stopped",
        "stopped 01JOB 15",
        "stopped 01JOB 99999 10.0",  # no such signal
        "stopped 01JOB -9 10.0",
        "stopped 01JOB TERM 10.0",
        "stopped 01JOB 15 nan",
        "stopped 01JOB 15 inf",
        "stopped 01JOB 15 -1",
        f"stopped 01JOB 15 {MAX_DURATION * 2}",
        "stopped 01JOB 15 1" + "0" * 2000,  # too long to be a request
    ],
)
def test_anything_else_is_no_request(data):
    assert StopRequest.parse(data) is None


def test_who_asked_is_kept_and_checked_and_later_fields_are_ignored():
    assert StopRequest.parse("stopped 01JOB 15 10.0 ops@h").by == "ops@h"
    assert StopRequest.parse("stopped 01JOB 15 10.0").by == ""  # an older stopper's
    # A newer singlerun may add fields: this one still acts on the request.
    assert StopRequest.parse("stopped 01JOB 15 10.0 ops@h more") == StopRequest(
        "stopped", "01JOB", 15, 10.0, "ops@h"
    )
    # Shown in `history`: no terminal escapes from a server, no unbounded text.
    assert StopRequest.parse("stopped 01JOB 15 10.0 \x1b]0;pwned\x07").by == "?"
    assert StopRequest.parse("stopped 01JOB 15 10.0 " + "u" * 400).by == "?"
