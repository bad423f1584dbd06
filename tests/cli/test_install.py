"""The README's first command works on a fresh copy, and installs the man page."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fresh_copy(to: Path) -> Path:
    """The source tree as a clone has it: no virtual environment, caches or build output."""
    junk = (".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache")
    shutil.copytree(ROOT, to, ignore=shutil.ignore_patterns(*junk))
    return to


def test_readme_install_command_runs_a_job_and_installs_the_man_page(tmp_path):
    first = re.search(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "pip install" in first and "singlerun" in first
    copy = _fresh_copy(tmp_path / "singlerun")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SINGLERUN_", "VIRTUAL_ENV"))}
    env["TMPDIR"] = str(tmp_path)  # the default lock directory goes there
    r = subprocess.run(
        ["bash", "-c", first], cwd=copy, capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from singlerun\n"
    man = copy / ".venv" / "share" / "man" / "man1" / "singlerun.1"
    assert man.read_text() == (ROOT / "man" / "singlerun.1").read_text()


def test_build_makes_an_sdist_and_a_wheel_that_installs_and_runs_in_a_clean_venv(tmp_path):
    copy = _fresh_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(copy)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (sdist,) = dist.glob("singlerun-*.tar.gz")
    (wheel,) = dist.glob("singlerun-*-py3-none-any.whl")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "man/singlerun.1", "singlerun/store/base.py"} <= names
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SINGLERUN_", "VIRTUAL_ENV"))}
    env["SINGLERUN_LOCK_DIR"] = str(tmp_path / "locks")
    # `build` made the wheel from the sdist, so installing the wheel proves both.
    venv = _venv_with(tmp_path / "venv", [str(wheel)], env)
    run = [str(venv / "bin" / "singlerun"), "-n", "t", "--", "echo", "installed"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "installed\n", "")
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "singlerun", "history", "-n", "t", "--json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0 and '"outcome": "ok"' in r.stdout, r.stdout + r.stderr
    assert (venv / "share" / "man" / "man1" / "singlerun.1").exists()
    _the_floors_work(tmp_path, wheel, env)


def _venv_with(venv: Path, requirements: list[str], env: dict[str, str]) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements]
    r = subprocess.run(pip, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return venv


def _the_floors_work(tmp_path: Path, wheel: Path, env: dict[str, str]) -> None:
    """Issue 24.6: every declared floor (`>=` in pyproject.toml) installed exactly, then a
    run, a conflict, status, stop and history."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = [re.sub(r">=", "==", d) for d in deps]
    assert all("==" in f for f in floors), deps
    venv = _venv_with(tmp_path / "floors", [*floors, "--no-deps", str(wheel)], env)
    bin_ = str(venv / "bin" / "singlerun")
    holder = subprocess.Popen([bin_, "-n", "f", "--", "sleep", "30"], env=env)
    try:
        for _ in range(100):
            r = subprocess.run([bin_, "status", "-n", "f"], env=env, capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([bin_, "-n", "f", "--", "true"], env=env, capture_output=True)
        assert r.returncode == 75, r.stderr
        r = subprocess.run([bin_, "stop", "-n", "f"], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith("stopped default/f"), r.stderr
        assert holder.wait(10) == 128 + 15
    finally:
        holder.kill()
        holder.wait()
    r = subprocess.run([bin_, "history", "-n", "f"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "default/f" in r.stdout, r.stderr
