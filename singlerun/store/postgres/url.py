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
from urllib.parse import parse_qsl, unquote, urlencode, urlunsplit

from singlerun.store.url import bad_url, split

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


def parse(url: str) -> PostgresURL:
    parts, port = split(url, SCHEMES)
    params = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in params if k == "schema"}
    schema = ours.get("schema", DEFAULT_SCHEMA)
    if not _IDENTIFIER.fullmatch(schema):
        raise bad_url("schema must be a lower-case SQL identifier (letters, digits, _)")
    if schema in _NOT_OURS or schema.startswith("pg_"):
        raise bad_url(f"schema {schema!r} is not singlerun's to create tables in: name its own")
    theirs = [(k, v) for k, v in params if k != "schema"]
    given = dict(theirs)
    if "connect_timeout" not in given:
        theirs.append(("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    elif not (given["connect_timeout"].isascii() and given["connect_timeout"].isdigit()) or (
        int(given["connect_timeout"]) < 1
    ):  # libpq reads 0 as "wait forever", which a black-holed server then makes true
        raise bad_url("connect_timeout must be a whole number of seconds, at least 1")
    conninfo = urlunsplit(parts._replace(query=urlencode(theirs)))
    user = f"{unquote(parts.username)}@" if parts.username else ""
    host = parts.hostname or dict(theirs).get("host", "")
    host = f"[{host}]" if ":" in host else host
    where = f"{host}:{port}" if port else host
    db = parts.path.lstrip("/")
    location = f"{parts.scheme}://{user}{where}/{db}" + (f"?schema={schema}" if ours else "")
    return PostgresURL(conninfo, schema, location)
