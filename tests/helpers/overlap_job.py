"""A job that detects overlap: it creates a marker with O_EXCL on entry, removes it on exit.

argv: DIR [SECONDS]. A marker already there means another instance is inside: it appends a
line to DIR/violations. Every run appends its PID to DIR/runs. Stopped by SIGTERM or SIGINT,
it removes its marker first (only SIGKILL leaves one).
"""

import os
import signal
import sys
import time

d = sys.argv[1]
marker = os.path.join(d, "inside")
try:
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    mine = True
except FileExistsError:
    mine = False
    with open(os.path.join(d, "violations"), "a") as f:
        f.write(f"{os.getpid()}\n")
with open(os.path.join(d, "runs"), "a") as f:
    f.write(f"{os.getpid()}\n")


def _terminated(signum: int, _frame: object) -> None:
    # Stopped (SIGTERM/SIGINT): leave as we came in, then die of the signal as before.
    if mine:
        os.unlink(marker)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, _terminated)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.01)
if mine:
    os.unlink(marker)
