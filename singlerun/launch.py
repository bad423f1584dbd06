"""The console script's entry point: a guard that imports nothing heavy itself.

Ctrl-C before singlerun holds anything ends it at once with 130 (Python's own handler would
raise KeyboardInterrupt in the middle of imports, where it is printed and even swallowed);
signals.py replaces this handler before singlerun takes a lock. `_signal`, not `signal`: the latter
spends a millisecond building enums on import, a window in which Ctrl-C is not yet ours.
If the interpreter cannot load singlerun at all (no free descriptors, no memory), one
`singlerun: ...` line and 125. What the standard library prints while failing to load
(hashlib logs a traceback when OpenSSL cannot be mapped) is held back meanwhile.
"""

import _signal
import io
import os
import sys

from singlerun import PREFIX  # the package itself: already loaded to reach this module


def _interrupted(_signum: int, _frame: object) -> None:
    # Die of SIGINT itself, as after a job's Ctrl-C (signals.die_of_signal), so a shell loop stops.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGINT)
    os._exit(128 + _signal.SIGINT)


def main() -> None:
    if any("://" in arg and "@" in arg for arg in sys.argv):  # Python's copy of the same
        from singlerun.argvmask import hide_url_passwords

        hide_url_passwords()  # before a watchdog is forked with the same argument memory
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:  # not SIG_IGN
        _signal.signal(_signal.SIGINT, _interrupted)
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        from singlerun.cli import entry
    except Exception as exc:  # even SystemError: CPython out of memory mid-import
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        os.write(2, f"{PREFIX}cannot start: {reason}\n".encode())
        os._exit(125)
    finally:
        sys.stderr = stderr
    entry()
