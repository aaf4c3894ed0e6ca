"""Strict base64url (RFC 7515 section 2): no padding, no foreign characters, canonical only."""

from __future__ import annotations

import base64
import binascii

_ALPHABET_ORDERED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALPHABET = frozenset(_ALPHABET_ORDERED)
# Value of each base64url character, for the canonical-trailing-bits check.
_VALUES = {c: i for i, c in enumerate(_ALPHABET_ORDERED)}


def b64url_encode(data: bytes) -> bytes:
    """Encode without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_encode_str(data: bytes) -> str:
    return b64url_encode(data).decode("ascii")


def b64url_decode(data: bytes | str) -> bytes:
    """Decode strictly; raise ``ValueError`` on padding, bad characters or non-canonical input.

    Non-canonical encodings (set bits past the last byte) are refused, so base64url adds no
    second spelling of a token. A token can still have another valid spelling through its
    signature (ECDSA (r, n-s) verifies too): replay caches and deny-lists must key on ``jti``
    or on the signing input, never on the whole token text.
    """
    if isinstance(data, str):
        try:
            raw = data.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("invalid base64url character (non-ASCII)") from None
    else:
        raw = data
    n = len(raw)
    rem = n % 4
    if rem == 1:
        raise ValueError("invalid base64url length")
    # bytes.translate with delete=alphabet leaves only foreign bytes: a C-speed check.
    if raw.translate(None, _ALPHABET_BYTES):
        raise ValueError("invalid base64url character")
    if rem:
        last = _VALUES[raw[-1]]
        mask = 0x0F if rem == 2 else 0x03
        if last & mask:
            raise ValueError("non-canonical base64url")
        raw = raw + b"=" * (4 - rem)
    try:
        # The alphabet was checked above: map to the standard one and decode in one C call
        # (base64.urlsafe_b64decode adds three Python-level wrappers per segment).
        return binascii.a2b_base64(raw.translate(_URL_TO_STD), strict_mode=True)
    except binascii.Error as exc:  # pragma: no cover - excluded by the checks above
        raise ValueError(str(exc)) from None


_ALPHABET_BYTES = bytes(sorted(_ALPHABET))
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
