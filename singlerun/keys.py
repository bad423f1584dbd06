"""Job keys (group, name): validation, the name derived from a command, safe file names."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation
# into a ForwardRef, a cost every run paid at start-up (issue 21). Forward references are
# quoted instead.

import os
from typing import NamedTuple

from singlerun.errors import UsageError

MAX_LEN = 200
DEFAULT_GROUP = "default"
MAX_SLOTS = 1024  # --max-concurrent's upper bound: slots of one key
# Bytes kept as they are in file names; everything else becomes %XX. '.' is not among them,
# so it can separate group from name, and '~' marks hashed stems: the encoding stays injective.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Longer stems are hashed so that stem + suffix stays well under NAME_MAX (255 bytes).
_MAX_STEM = 160


def _check(kind: str, value: str) -> None:
    if not value:
        raise UsageError(f"the job {kind} must not be empty")
    if len(value) > MAX_LEN:
        raise UsageError(f"the job {kind} is longer than {MAX_LEN} characters")
    bad = next((c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise UsageError(f"the job {kind} contains the control character {bad!r}")
    if any(0xD800 <= ord(c) < 0xE000 for c in value):
        raise UsageError(f"the job {kind} is not valid UTF-8 text")
    if not value.isascii():
        import unicodedata  # lazy: most names are ASCII

        bad = next((c for c in value if unicodedata.category(c) == "Cf"), None)
        if bad is not None:  # bidi overrides, zero-width joiners: text that lies on screen
            raise UsageError(
                f"the job {kind} contains the invisible format character U+{ord(bad):04X}"
            )


def _encode(text: str) -> str:
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode())


def _decode(part: str) -> str | None:
    try:
        raw = bytearray()
        i = 0
        while i < len(part):
            if part[i] == "%":
                raw.append(int(part[i + 1 : i + 3], 16))
                i += 3
            else:
                raw.append(ord(part[i]))
                i += 1
        return raw.decode()
    except (ValueError, UnicodeDecodeError):
        return None


class JobKey(NamedTuple):
    """A key: immutable and hashable, a NamedTuple for a cheap start-up (record.Record)."""

    group: str
    name: str

    @classmethod
    def make(cls, group: str, name: str) -> "JobKey":
        _check("group", group)
        _check("name", name)
        return cls(group, name)

    @classmethod
    def for_command(cls, group: str, argv: list[str]) -> "JobKey":
        """run-one's key: the program's basename, plus a hash of the whole argv if it has args."""
        program = os.path.basename(argv[0].rstrip("/")) or argv[0]
        base = "".join(c if ord(c) >= 0x20 and c != "\x7f" else "?" for c in program)
        base = base.encode(errors="replace").decode()[:100]
        # With arguments, or when the basename had to be changed to be a valid name (control
        # characters, bytes that are not UTF-8, length), a hash of the whole argv keeps
        # distinct commands distinct keys.
        if len(argv) > 1 or base != program:
            import hashlib  # lazy: most keys are named

            digest = hashlib.sha256("\0".join(argv).encode(errors="surrogateescape"))
            base = f"{base}-{digest.hexdigest()[:10]}"
        return cls.make(group, base)

    def __str__(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def stem(self) -> str:
        """The file-name stem of this key's files: distinct keys never share one."""
        stem = f"{_encode(self.group)}.{_encode(self.name)}"
        if len(stem) <= _MAX_STEM:
            return stem
        import hashlib  # lazy: most keys are short

        digest = hashlib.sha256(f"{self.group}\0{self.name}".encode()).hexdigest()
        return f"~{digest}"

    @staticmethod
    def from_stem(stem: str) -> "JobKey | None":
        """The key a stem encodes, or None for hashed or foreign stems."""
        group, dot, name = stem.partition(".")
        if not dot or "." in name:
            return None
        g, n = _decode(group), _decode(name)
        if not g or not n:
            return None
        key = JobKey(g, n)
        return key if key.stem == stem else None


class KeyFilter(NamedTuple):
    """The keys an operator subcommand is about: `-g` and `-n`, validated like a run's."""

    group: str | None = None
    name: str | None = None

    @classmethod
    def make(cls, group: str | None, name: str | None) -> "KeyFilter":
        """`-n` without `-g` means the default group, as for a run."""
        if name is not None:
            return cls(JobKey.make(group or DEFAULT_GROUP, name).group, name)
        if group is not None:
            _check("group", group)
        return cls(group, None)

    @property
    def key(self) -> "JobKey | None":
        """The one key named with `-n`, if any."""
        return None if self.name is None else JobKey(self.group or DEFAULT_GROUP, self.name)

    def matches(self, key: JobKey | None) -> bool:
        if key is None:
            return self.group is None and self.name is None
        return self.group in (None, key.group) and self.name in (None, key.name)
