"""Which bytes of a command line are a URL's password (argvmask.py masks them)."""

import pytest

from singlerun.argvmask import _password_spans


@pytest.mark.parametrize(
    "args, secrets",
    [
        (["singlerun", "--backend", "redis://u:pw@h:1/0", "--", "true"], [b"pw"]),
        (["singlerun", "--backend=postgresql://a:b:c@h/db?x=@", "--"], [b"b:c"]),
        (["x", "unix://:sock%40et@/run/redis.sock?db=1"], [b"sock%40et"]),
        (["x", "redis://a:1@h/0", "rediss://b:2@h/0"], [b"1", b"2"]),
        (["x", "redis://h:6379/0", "rediss://user@h/0", "redis://:@h/0", "plain:text@x"], []),
    ],
)
def test_the_password_spans(args, secrets):
    cmdline = b"\0".join(a.encode() for a in args) + b"\0"
    assert [cmdline[s:e] for s, e in _password_spans(cmdline)] == secrets
