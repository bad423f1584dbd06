"""What the network stores' URL parsers share: urllib's split, checked, and the one line a
bad URL gives (exit 2)."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from singlerun.errors import UsageError


def bad_url(why: str) -> UsageError:
    return UsageError(f"invalid --backend URL: {why}")


def split(url: str, schemes: tuple[str, ...]) -> tuple[SplitResult, int | None]:
    """The URL's parts and its port; a URL urllib cannot read (a bad port, a bad IPv6
    address) or of another scheme than `schemes` is a usage error."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad_url(str(exc)) from None
    if parts.scheme not in schemes:  # urllib lower-cases it; store.STORES sent it here
        raise bad_url(f"unknown scheme {parts.scheme!r}")
    return parts, port
