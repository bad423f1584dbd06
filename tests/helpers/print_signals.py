"""A job that prints `ready <pid> <fg>` and then the name of every signal it gets.

Exits 0 after the signal named in argv[1] (if any); otherwise runs until killed.
<fg> is `fg` when it owns the foreground of its terminal, else `bg`.
"""

import os
import signal
import sys
import time

SIGNALS = ("TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH")
exit_on = sys.argv[1] if len(sys.argv) > 1 else None


def handler(signum, _frame):
    name = signal.Signals(signum).name[3:]
    print(name, flush=True)
    if name == exit_on:
        sys.exit(0)


for n in SIGNALS:
    signal.signal(getattr(signal, "SIG" + n), handler)
try:
    fg = "fg" if os.tcgetpgrp(0) == os.getpgrp() else "bg"
except OSError:
    fg = "notty"
print(f"ready {os.getpid()} {fg}", flush=True)
while True:
    time.sleep(3600)
