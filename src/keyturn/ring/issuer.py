"""What an issuer may be: an absolute http(s) URL, bounded, without whitespace or NUL."""

from __future__ import annotations

from urllib.parse import urlsplit

from keyturn.errors import InvalidInputError

MAX_ISSUER_LENGTH = 2048


def check_issuer(issuer: str) -> str:
    """``issuer`` if it is an http(s) URL with a host; an invalid-input error otherwise."""
    if len(issuer) > MAX_ISSUER_LENGTH:
        raise InvalidInputError(f"issuer longer than {MAX_ISSUER_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in issuer):
        raise InvalidInputError("issuer must not contain whitespace or control characters")
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(f"issuer must be an http(s) URL, got {issuer!r}")
    return issuer
