"""A job that detects overlap: it creates a marker with O_EXCL on entry, removes it on exit.

argv: DIR [SECONDS]. A marker already there means another instance is inside: it appends a
line to DIR/violations. Every run appends its PID to DIR/runs.
"""

import os
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
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.01)
if mine:
    os.unlink(marker)
