"""The repository holds source, not downloads: no package archives or other binaries."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked() -> list[str]:
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [name for name in r.stdout.decode().split("\0") if name]


def test_no_binary_files_are_tracked():
    def binary(name: str) -> bool:
        if name.endswith((".whl", ".tar.gz", ".zip", ".egg")):
            return True
        path = ROOT / name
        return path.is_file() and b"\0" in path.read_bytes()[:8192]

    assert [name for name in _tracked() if binary(name)] == []


def test_the_checkers_the_test_command_fails_on_are_pinned():
    """A new ruff or mypy must not turn CI red with no code change (issue 24.6)."""
    pins = {}
    for line in (ROOT / "tests" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    assert {"ruff", "mypy", "types-psutil"} <= {k for k, v in pins.items() if v}
    assert "-c tests/constraints.txt" in (ROOT / "run-tests").read_text()
