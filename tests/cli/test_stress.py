"""Many launchers at once on one key: never two jobs inside at the same time."""

import time

import pytest

from tests.conftest import OVERLAP_JOB

LAUNCHERS = 30


@pytest.mark.parametrize("mode", ["conflict", "wait", "mixed"])
def test_concurrent_launchers_never_overlap(sr, tmp_path, mode):
    box = tmp_path / "box"
    box.mkdir()
    rounds = 1 if mode == "wait" else 2
    deadline = time.monotonic() + 20
    ran = 0
    for _ in range(rounds):
        procs = []
        for i in range(LAUNCHERS):
            wait = mode == "wait" or (mode == "mixed" and i % 2)
            args = [
                "-n",
                "hot",
                *(["--wait"] if wait else []),
                "--",
                *OVERLAP_JOB,
                str(box),
                "0.02",
            ]
            procs.append((wait, sr.start(*args)))
        for wait, p in procs:
            code = p.wait(max(1, deadline - time.monotonic()))
            err = p.stderr.read()
            assert code in ((0,) if wait else (0, 75)), err
            assert "Traceback" not in err
            ran += code == 0
    assert not (box / "violations").exists(), (box / "violations").read_text()
    assert len((box / "runs").read_text().split()) == ran
    assert ran >= (LAUNCHERS if mode == "wait" else rounds)
    assert not list(sr.lock_dir.glob("*.rec"))
    assert not list(sr.lock_dir.glob("*.queue/*"))
