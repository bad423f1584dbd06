"""JSON for the plain values of records and history rows, without importing `json`.

`dumps(v)` equals `json.dumps(v, ensure_ascii=True, separators=(",", ":"))` for None, bools,
ints, finite floats, strings and lists or tuples of them (tests/unit/test_compactjson.py
checks). Importing `json` costs ~1.3 ms, a fifth of singlerun's own start-up; a run only
writes JSON (its record and its history row), so it uses the C string encoder directly.
Readers parse with `json` itself.
"""

from _json import encode_basestring_ascii


def dumps(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return str(encode_basestring_ascii(value))
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not JSON")
        return float.__repr__(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable here")
