"""The lock directory: where it is, whether it is safe, and the one descriptor every file in
it is reached through (docs/CONTRACT.md §6).

The directory is opened once, checked with fstat, and every later open, stat, rename and
unlink is relative to that descriptor with O_NOFOLLOW: a directory swapped or replaced by a
symlink after the check is never reached, and no path is resolved twice. Libraries that take
only a path (sqlite3, inotify) get `/proc/self/fd/N/name`, which the kernel
resolves through the same descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from singlerun.errors import StoreError

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a planted FIFO never blocks
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
GROUP_RECIPE = (
    "to share locks between users, use a setgid group directory: install -d -m 2770 -g GROUP DIR"
)


def default_lock_dir() -> str:
    """/tmp/singlerun-<uid>: from the user id alone (docs/CONTRACT.md §6). XDG_RUNTIME_DIR,
    TMPDIR and HOME differ between cron, a login shell, sudo and a service; a default taken
    from them let a cron job and the same job started by hand run side by side."""
    return f"/tmp/singlerun-{os.geteuid()}"


def _in_group(gid: int) -> bool:
    return gid == os.getegid() or gid in os.getgroups()


class LockDir:
    """A checked, open lock directory."""

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        """`read_only`: for `status` and `history`, which only read. root may then read any
        user's directory, and creates none that would be left root-owned for a user."""
        self.path = os.path.abspath(path)
        self.read_only = read_only
        create = not (read_only and os.geteuid() == 0 and self.path != default_lock_dir())
        try:
            if create:
                os.makedirs(self.path, 0o700, exist_ok=True)
        except FileExistsError:
            pass  # the checks below say whether it will do
        except OSError as exc:
            raise StoreError(f"cannot create lock directory {self.path}: {exc.strerror}") from None
        try:
            self.fd = os.open(self.path, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_DIRECTORY reports a symlink so
                link = os.path.islink(self.path)
                why = "is a symbolic link" if link else "is not a directory"
                raise StoreError(f"refusing lock directory {self.path}: it {why}") from None
            raise StoreError(f"cannot use lock directory {self.path}: {exc.strerror}") from None
        try:
            self.mode = self._check(os.fstat(self.fd))
        except BaseException:
            os.close(self.fd)
            raise

    def _check(self, st: os.stat_result) -> int:
        """Refuse an unsafe directory; return the mode of the files singlerun creates in it.

        Safe: owned by us or root, or a setgid directory of one of our groups (the shared
        model; root may administer any); never writable by others without the sticky bit
        (like /tmp, where nobody can replace another's files). root may read any."""
        shared = bool(st.st_mode & stat.S_ISGID) and (_in_group(st.st_gid) or os.geteuid() == 0)
        reader = self.read_only and os.geteuid() == 0  # root reading a user's directory
        if st.st_uid not in (os.geteuid(), 0) and not shared and not reader:
            raise StoreError(
                f"refusing lock directory {self.path}: it is owned by uid {st.st_uid}, not by "
                f"you ({GROUP_RECIPE})"
            )
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise StoreError(
                f"refusing lock directory {self.path}: it is writable by others without the "
                "sticky bit"
            )
        # Group read-write in a setgid directory, whatever the umask: the group shares it.
        # Never world-readable: records and history hold command lines.
        return 0o660 if st.st_mode & stat.S_ISGID else 0o600

    # -- names --------------------------------------------------------------------------

    def show(self, name: str) -> str:
        """The path to print in messages."""
        return os.path.join(self.path, name)

    def at(self, name: str = "") -> str:
        """A path through the descriptor, for libraries that only take paths."""
        return f"/proc/self/fd/{self.fd}/{name}" if name else f"/proc/self/fd/{self.fd}"

    def error(self, action: str, name: str, exc: OSError) -> StoreError:
        """One line for a failed file operation, with the fix where there is one."""
        path = self.show(name)
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            return StoreError(f"refusing to {action} {path}: it is a symbolic link")
        if exc.errno in (errno.EACCES, errno.EPERM):
            owner = self.owner(name)
            if owner is not None and owner != os.geteuid():
                return StoreError(
                    f"cannot {action} {path}: it belongs to uid {owner} ({GROUP_RECIPE})"
                )
        return StoreError(f"cannot {action} {path}: {exc.strerror or exc}")

    # -- files ----------------------------------------------------------------------------

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self.lstat(name) is not None

    def owner(self, name: str) -> int | None:
        try:
            st = self.lstat(name)
        except OSError:
            return None
        return None if st is None else st.st_uid

    def open(self, name: str, flags: int, *, create: bool = False) -> int:
        """Open `name` without following a symlink or blocking on a FIFO; a file we create
        gets the directory's file mode whatever the umask. Raises OSError."""
        while True:
            try:
                return os.open(name, flags | _NOFOLLOW, dir_fd=self.fd)
            except FileNotFoundError:
                if not create:
                    raise
            try:
                return self._create(name, flags)
            except FileExistsError:
                continue  # created by another process meanwhile

    def _create(self, name: str, flags: int) -> int:
        """A new file, with the directory's file mode whatever the umask."""
        fd = os.open(name, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=self.fd)
        os.fchmod(fd, self.mode)
        return fd

    def read(self, name: str, limit: int | None = None) -> tuple[bytes, int] | None:
        """The file's bytes (the first `limit`, if given) and its owner's uid; None if there
        is none. A symlink, FIFO or other non-file reads as empty (a corrupt record)."""
        try:
            fd = self.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return b"", -1
            raise self.error("read", name, exc) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return b"", st.st_uid
            if limit is not None:
                return os.read(fd, limit), st.st_uid
            with open(fd, "rb", closefd=False) as f:
                return f.read(), st.st_uid
        finally:
            os.close(fd)

    def replace(self, name: str, data: bytes, what: str) -> int:
        """Replace `name` atomically (a temp file under an unpredictable name, created with
        O_EXCL, then renamed over it); return the new file's inode."""
        tmp = f".{name}.{os.urandom(8).hex()}.tmp"  # os.urandom: what secrets reads too
        try:
            fd = self._create(tmp, os.O_WRONLY)
            try:
                if os.write(fd, data) != len(data):  # a file size limit cuts writes short
                    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            # rename replaces a planted symlink instead of following it
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise self.error(f"write {what}", name, exc) from None
        return inode

    def unlink(self, name: str, inode: int | None = None) -> None:
        """Remove `name` (only if it is still the file `inode`, when given)."""
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            if inode is None or st.st_ino == inode:
                os.unlink(name, dir_fd=self.fd)

    def subdir(self, name: str) -> int:
        """Open (creating if needed) a subdirectory with the directory's own mode; refuse
        anything but a real directory. Raises OSError."""
        mode = os.fstat(self.fd).st_mode & 0o7777
        try:
            os.mkdir(name, 0o700, dir_fd=self.fd)
        except FileExistsError:
            pass
        else:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
            os.fchmod(fd, mode)  # mkdir applies the umask
            return fd
        return os.open(name, _DIR_FLAGS, dir_fd=self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
