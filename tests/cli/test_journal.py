"""Under systemd, stderr is the journal (JOURNAL_STREAM names its device and inode): each
line singlerun writes starts with its syslog priority, as sd-daemon(3) describes, so that
`journalctl -p warning` finds conflicts and lost leases (issue 24.2)."""

import os
import subprocess

from tests.conftest import SINGLERUN, stop


def _lines(sr, tmp_path, *args: str, journal: bool = True) -> list[str]:
    log = tmp_path / "journal"
    with open(log, "w") as err:
        st = os.fstat(err.fileno())
        stream = f"{st.st_dev}:{st.st_ino}" if journal else f"{st.st_dev}:{st.st_ino + 1}"
        env = {**sr.env, "JOURNAL_STREAM": stream}
        subprocess.run([*SINGLERUN, *args], env=env, stderr=err, stdout=subprocess.DEVNULL,
                       timeout=30)  # fmt: skip
    return log.read_text().splitlines()


def test_each_line_carries_its_priority_when_stderr_is_the_journal(sr, tmp_path):
    holder, _ = sr.start_holder("-n", "k")
    (conflict,) = _lines(sr, tmp_path, "-n", "k", "--", "true")
    assert conflict.startswith("<4>singlerun: default/k is already running"), conflict
    (error,) = _lines(sr, tmp_path, "--lock-dir", "/proc/self", "-n", "x", "--", "true")
    assert error.startswith("<3>singlerun: "), error
    stop(holder)
    info = _lines(sr, tmp_path, "-v", "-n", "k", "--", "sh", "-c", "echo job >&2")
    assert info[0].startswith("<6>singlerun: default/k: acquired in ")
    assert "job" in info  # the job's own lines are its own
    (timeout,) = _lines(sr, tmp_path, "-n", "t", "--max-runtime", "200ms", "--", "sleep", "5")
    assert timeout.startswith("<4>singlerun: default/t: job "), timeout


def test_no_priority_when_stderr_is_not_the_journal(sr, tmp_path):
    holder, _ = sr.start_holder("-n", "k")
    (conflict,) = _lines(sr, tmp_path, "-n", "k", "--", "true", journal=False)
    assert conflict.startswith("singlerun: default/k is already running"), conflict
    stop(holder)


def test_a_run_under_systemd_records_its_invocation_id(sr):
    """Issue 24.2: `status` names the unit's invocation, for `journalctl
    _SYSTEMD_INVOCATION_ID=…`; a malformed one (it is only an environment variable) is
    not recorded."""
    import json

    invocation = "0123456789abcdef0123456789abcdef"
    holder, _ = sr.start_holder("-n", "u", env={"INVOCATION_ID": invocation})
    (entry,) = json.loads(sr.run("status", "--json", "-n", "u").stdout)
    assert entry["holders"][0]["invocation_id"] == invocation
    stop(holder)
    holder, _ = sr.start_holder("-n", "u", env={"INVOCATION_ID": "../../etc; rm -rf"})
    (entry,) = json.loads(sr.run("status", "--json", "-n", "u").stdout)
    assert entry["holders"][0]["invocation_id"] is None
    stop(holder)
