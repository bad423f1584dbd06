"""`--backend` URLs for PostgreSQL: checked without importing psycopg.

    postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]
    postgres://…

libpq's own conventions hold: its parameters (`sslmode`, `connect_timeout`, `host=/dir` for
a Unix socket, ...), and the password from the URL, `PGPASSWORD` or `~/.pgpass`, which
libpq reads itself. One parameter is ours: `schema` (default `singlerun`), the schema that
holds singlerun's tables, so that teams can share a database. The password is never part
of `location`, the form every message shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from singlerun.store.url import bad_url

SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "singlerun"
DEFAULT_CONNECT_TIMEOUT = "5"  # seconds, libpq's connect_timeout
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Schemas that hold someone else's tables: singlerun's migration would write into them.
_NOT_OURS = ("public", "information_schema")


@dataclass(frozen=True)
class PostgresURL:
    conninfo: str  # for libpq: the URL without our own parameter
    schema: str
    location: str  # for messages: no password, ever


def _query_items(query: str) -> list[tuple[str, str, str]]:
    """(key, value, the item as written) of each `&`-separated query item."""
    items = []
    for raw in query.split("&"):
        if raw:
            key, _, value = raw.partition("=")
            items.append((unquote_plus(key), unquote_plus(value), raw))
    return items


def _hosts(netloc: str) -> str:
    """The host list as written, each port checked: libpq takes `h1:5432,h2:5433`."""
    for host in netloc.split(","):
        tail = host[host.rfind("]") + 1 :]  # after an [IPv6] address, if any
        port = tail.rpartition(":")[2] if ":" in tail else ""
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise bad_url(f"port {port!r} is out of range (1 to 65535)")
    return netloc


def parse(url: str) -> PostgresURL:
    """The URL goes to libpq as written (libpq's forms: a Unix socket as `postgresql:///db`
    or `?host=/dir`, several hosts, `options=`), less our own `schema=` and with a
    `connect_timeout` if it has none; what messages show is derived without the password."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise bad_url(f"unknown scheme {scheme.lower()!r}")
    rest, _, _fragment = rest.partition("#")
    before_query, _, query = rest.partition("?")
    netloc, slash, path = before_query.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    items = _query_items(query)
    ours = [v for k, v, _ in items if k == "schema"]
    schema = ours[-1] if ours else DEFAULT_SCHEMA
    if not _IDENTIFIER.fullmatch(schema):
        raise bad_url("schema must be a lower-case SQL identifier (letters, digits, _)")
    if schema in _NOT_OURS or schema.startswith("pg_"):
        raise bad_url(f"schema {schema!r} is not singlerun's to create tables in: name its own")
    theirs = [(k, v, raw) for k, v, raw in items if k != "schema"]
    timeouts = [v for k, v, _ in theirs if k == "connect_timeout"]
    if not timeouts:
        default = f"connect_timeout={DEFAULT_CONNECT_TIMEOUT}"
        theirs.append(("connect_timeout", DEFAULT_CONNECT_TIMEOUT, default))
    elif not (timeouts[-1].isascii() and timeouts[-1].isdigit()) or int(timeouts[-1]) < 1:
        # libpq reads 0 as "wait forever", which a black-holed server then makes true
        raise bad_url("connect_timeout must be a whole number of seconds, at least 1")
    conninfo = f"{scheme}://{before_query}?" + "&".join(raw for _, _, raw in theirs)
    user = unquote(userinfo.partition(":")[0])
    db = unquote(path) if slash else ""
    shown = [f"host={v}" for k, v, _ in theirs if k == "host"] + [f"schema={schema}"] * bool(ours)
    where = f"{user + '@' if user else ''}{_hosts(hosts)}/{db}"
    query_shown = "?" + "&".join(shown) if shown else ""
    return PostgresURL(conninfo, schema, f"{scheme}://{where}{query_shown}")
