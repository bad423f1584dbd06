"""`--backend` URLs for Redis: parsed and checked without importing redis-py.

    redis://[[user]:password@]host[:port][/db][?prefix=P&connect_timeout=D]
    rediss://…[&ssl_ca_certs=FILE&ssl_certfile=FILE&ssl_keyfile=FILE]   (TLS)
    unix://[[user]:password@]/path/to.sock[?db=N&prefix=P&connect_timeout=D]

The password may also come from REDISCLI_AUTH (as redis-cli reads it). It is never part of
`location`, the form every message and record shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from singlerun.durations import parse_duration
from singlerun.store.url import bad_url, split

DEFAULT_PREFIX = "singlerun:"
DEFAULT_CONNECT_TIMEOUT = 5.0
SCHEMES = ("redis", "rediss", "unix")
MAX_DB = 2**31 - 1  # Redis numbers its databases with a C int
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")  # redis-py's names


@dataclass(frozen=True)
class RedisURL:
    scheme: str
    host: str
    port: int
    path: str  # the socket, for unix://
    db: int
    username: str | None
    password: str | None
    prefix: str
    connect_timeout: float
    # rediss:// only: a private CA's certificates, and a client certificate and its key
    tls_files: dict[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """The URL as messages show it: no password, ever."""
        user = f"{self.username}@" if self.username else ""
        if self.scheme == "unix":
            return f"unix://{user}{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}/{self.db}"


def parse(url: str) -> RedisURL:
    parts, port = split(url, SCHEMES)
    if parts.scheme != "unix" and not parts.netloc:  # redis:/host:6379/0, a slash short
        raise bad_url(f"no host: write {parts.scheme}://HOST[:PORT][/DB], with two slashes")
    if port == 0:  # would quietly mean 6379, another server perhaps
        raise bad_url("the port must be 1 to 65535")
    if parts.hostname:
        try:
            parts.hostname.encode("idna")  # what the connection will do with it
        except UnicodeError:
            raise bad_url("bad host name: a label is empty or over 63 characters") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"prefix", "connect_timeout", "db", *TLS_FILES}
    if unknown:
        raise bad_url(f"unknown parameter {sorted(unknown)[0]!r}")
    one = {k: v[-1] for k, v in query.items()}
    tls_files = {k: v for k, v in one.items() if k in TLS_FILES}
    if tls_files and parts.scheme != "rediss":
        raise bad_url(f"{sorted(tls_files)[0]} is for rediss:// (TLS) only")
    if any(not v for v in tls_files.values()):
        raise bad_url("a TLS file parameter needs a file name")
    db_text = one.get("db", "") if parts.scheme == "unix" else parts.path.lstrip("/")
    if parts.scheme != "unix" and "db" in one:
        raise bad_url("give the database number as the path (/N)")
    digits = db_text or "0"
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_DB:
        raise bad_url(f"the database must be a number 0 to {MAX_DB}, not {db_text!r}")
    if parts.scheme == "unix":
        if not parts.path:
            raise bad_url("unix:// needs the socket's path")
    elif not parts.hostname:
        raise bad_url("no host")
    try:
        timeout = parse_duration(one.get("connect_timeout", "5s"))
    except ValueError as exc:
        raise bad_url(str(exc)) from None
    if not 0 < timeout <= 600:
        raise bad_url("connect_timeout must be more than 0 and at most 10m")
    prefix = one.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(ord(c) < 0x20 for c in prefix):
        raise bad_url("the prefix must be non-empty printable text")
    password = unquote(parts.password) if parts.password else os.environ.get("REDISCLI_AUTH")
    return RedisURL(
        scheme=parts.scheme,
        host=parts.hostname or "",
        port=port or 6379,
        path=unquote(parts.path) if parts.scheme == "unix" else "",
        db=int(db_text or 0),
        username=unquote(parts.username) if parts.username else None,
        password=password or None,
        prefix=prefix,
        connect_timeout=timeout,
        tls_files=tls_files,
    )
