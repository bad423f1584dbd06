"""A signal before the job starts is never lost, even when Python swallows the exception
its handler raised (inside an import lock's weakref callback, say)."""

import gc
import sys
import weakref

import pytest

from singlerun import signals
from singlerun.errors import Interrupted


def test_interrupt_swallowed_by_a_callback_is_taken_up_at_the_checkpoint(monkeypatch, capsys):
    monkeypatch.setattr(signals, "_interrupted", [])
    monkeypatch.setattr(sys, "unraisablehook", signals._swallowed)

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing, lambda _ref: signals._interrupt(15, None))
    del thing  # the callback raises Interrupted; Python hands it to the unraisable hook
    gc.collect()
    assert ref() is None
    assert capsys.readouterr().err == ""  # not printed
    with pytest.raises(Interrupted) as caught:
        signals.checkpoint()  # not lost
    assert caught.value.exit_code == 128 + 15


def test_other_unraisable_exceptions_are_still_reported(monkeypatch, capsys):
    monkeypatch.setattr(sys, "unraisablehook", signals._swallowed)

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing, lambda _ref: 1 / 0)
    del thing
    gc.collect()
    assert ref() is None
    assert "ZeroDivisionError" in capsys.readouterr().err
