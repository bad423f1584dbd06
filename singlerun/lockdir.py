"""The lock directory: where it is, and whether it is safe to use (SPEC §6)."""

from __future__ import annotations

import os
import stat

from singlerun.errors import StoreError


def default_lock_dir() -> str:
    """/tmp/singlerun-<uid>: from the user id alone (SPEC §6). XDG_RUNTIME_DIR, TMPDIR and
    HOME differ between cron, a login shell, sudo and a service; a default taken from them
    let a cron job and the same job started by hand run side by side."""
    return f"/tmp/singlerun-{os.geteuid()}"


def prepare(path: str) -> str:
    """Create the directory (0700) if missing, then refuse it unless it is safe.

    Safe: a real directory (not a symlink), owned by us or root, and not writable by others
    unless it has the sticky bit (like /tmp, where nobody can replace another's files).
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass  # a non-directory; the checks below say which
    except OSError as exc:
        raise StoreError(f"cannot create lock directory {path}: {exc.strerror}") from None
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise StoreError(f"cannot use lock directory {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"refusing lock directory {path}: it is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"refusing lock directory {path}: it is not a directory")
    if st.st_uid not in (os.geteuid(), 0):
        raise StoreError(
            f"refusing lock directory {path}: it is owned by uid {st.st_uid}, not by you"
        )
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise StoreError(
            f"refusing lock directory {path}: it is writable by others without the sticky bit"
        )
    return path
