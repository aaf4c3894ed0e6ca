"""A thin, strict compact-JWS layer on ``cryptography`` (RFC 7515/7518/8037).

keyturn signs and verifies with its own small JWS code rather than a JOSE library because the
hot paths are dominated by parsing, not by the cryptography: measured here, PyJWT verifies
RS256 at ~0.3 of the raw primitive, joserfc at ~0.4, this code at ~0.7 (see
docs/benchmarks.md). It is differential-tested against PyJWT and joserfc.

Hardening, each a deliberate choice:
- only the asymmetric algorithms in ``keys.algorithms.Alg``: ``none`` and every HMAC algorithm are
  unknown, so the HS256-keyed-with-a-public-key confusion cannot happen;
- the caller's allow-list AND the key's own algorithm must both admit the header's ``alg``;
- ``crit`` and ``b64`` (RFC 7797) are refused: keyturn understands no extension;
- ``jku``, ``x5u``, ``jwk`` and ``x5c`` are never used to find a key;
- sizes are capped before any decoding; base64url is strict and canonical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    encode_dss_signature,
)

from keyturn.errors import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    MalformedTokenError,
    TokenTooLargeError,
    UnsupportedHeaderError,
)
from keyturn.keys.algorithms import SPECS, Alg, PublicKey, check_key_for_alg
from keyturn.keys.b64 import b64url_decode, b64url_encode
from keyturn.keys.backends.base import RawSigner

# Re-exported: the private-key side lives with the key material so every key backend (software,
# PKCS#11) emits the same JWS signature bytes.
from keyturn.keys.signing import CURVE_ORDERS as CURVE_ORDERS
from keyturn.keys.signing import SigningKey as SigningKey
from keyturn.keys.signing import pss_padding as _pss

DEFAULT_MAX_TOKEN_BYTES = 16 * 1024
MAX_HEADER_SEGMENT = 4096
MAX_SIGNATURE_SEGMENT = 1024
MAX_KID_LENGTH = 256
_ALG_BY_NAME = {a.value: a for a in Alg}


class VerifyingKey:
    """A public key with the algorithms it may verify (one, or all its type allows).

    Each algorithm gets a prepared check (padding, hash, sizes bound once), so verifying does
    no type dispatch per token.
    """

    __slots__ = ("_checks", "algs", "key", "kid")

    def __init__(self, key: PublicKey, algs: Iterable[Alg], kid: str | None = None) -> None:
        self.key = key
        self.kid = kid
        self.algs = frozenset(algs)
        for alg in self.algs:
            check_key_for_alg(key, alg)
        self._checks: dict[Alg, Callable[[bytes, bytes], None]] = {
            alg: _prepare_check(key, alg) for alg in self.algs
        }

    def verify(self, alg: Alg, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` over ``data`` is valid for ``alg``; never raises for bad input."""
        check = self._checks.get(alg)
        if check is None:
            return False
        try:
            check(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


def _prepare_check(key: PublicKey, alg: Alg) -> Callable[[bytes, bytes], None]:
    """A function raising ``InvalidSignature``/``ValueError`` unless the signature is valid."""
    spec = SPECS[alg]
    if isinstance(key, rsa.RSAPublicKey):
        assert spec.hash is not None
        pad: padding.AsymmetricPadding = (
            _pss(spec) if spec.family == "rsa-pss" else padding.PKCS1v15()
        )
        h = spec.hash()
        sig_len = (key.key_size + 7) // 8
        verify_rsa = key.verify

        def check_rsa(signature: bytes, data: bytes) -> None:
            if len(signature) != sig_len:
                raise InvalidSignature
            verify_rsa(signature, data, pad, h)

        return check_rsa
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert spec.hash is not None
        size = spec.coord_size
        sig_alg = ec.ECDSA(spec.hash())
        verify_ec = key.verify

        def check_ec(signature: bytes, data: bytes) -> None:
            # JWS ECDSA signatures are exactly r||s, fixed width (RFC 7518 section 3.4).
            if len(signature) != 2 * size:
                raise InvalidSignature
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            verify_ec(encode_dss_signature(r, s), data, sig_alg)

        return check_ec
    assert isinstance(key, ed25519.Ed25519PublicKey)
    # The bound method itself: no wrapper frame (Ed25519 takes no parameters to bind).
    return key.verify


class ParsedToken(NamedTuple):
    """A compact JWS split and decoded, signature not yet checked.

    A NamedTuple rather than a frozen dataclass: built once per token on the verify hot path,
    where a frozen dataclass's ``__init__`` costs about three times as much. ``header`` may be
    shared between tokens with the same protected header: treat it as read-only.
    """

    header: dict[str, Any]
    alg: Alg
    kid: str | None
    signing_input: bytes
    payload_json: bytes  # the payload segment, base64url-decoded; JSON not yet parsed
    signature: bytes

    def payload(self) -> dict[str, Any]:
        try:
            obj = orjson.loads(self.payload_json)
        except orjson.JSONDecodeError:
            raise MalformedTokenError("payload is not JSON") from None
        if not isinstance(obj, dict):
            raise MalformedTokenError("payload is not a JSON object")
        return obj


def parse_compact(
    token: str | bytes,
    *,
    allowed_algs: frozenset[Alg] | set[Alg],
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
) -> ParsedToken:
    """Split and check a compact JWS; raise a ``TokenError`` subclass on anything unsafe."""
    if isinstance(token, str):
        if len(token) > max_token_bytes:
            raise TokenTooLargeError(f"token longer than {max_token_bytes} bytes")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedTokenError("token contains non-ASCII characters") from None
    elif type(token) is bytes:
        raw = token
        if len(raw) > max_token_bytes:
            raise TokenTooLargeError(f"token longer than {max_token_bytes} bytes")
    elif isinstance(token, bytes | bytearray | memoryview):
        # A private immutable copy: the header cache needs hashable bytes, and a caller's
        # buffer must not change between the checks and the signature.
        if len(token) > max_token_bytes:  # memoryview: len counts items, not bytes
            raise TokenTooLargeError(f"token longer than {max_token_bytes} bytes")
        raw = bytes(token)
        if len(raw) > max_token_bytes:
            raise TokenTooLargeError(f"token longer than {max_token_bytes} bytes")
    else:
        raise MalformedTokenError(f"a token is str or bytes, not {type(token).__name__}")
    signing_input, _, sig_seg = raw.rpartition(b".")
    header_seg, dot, payload_seg = signing_input.partition(b".")
    # rpartition and partition leave dots only in the middle part, where the strict decode
    # refuses them: no separate scan of the payload for a third dot. The payload is decoded
    # first so that a token with extra parts is called that before anything else is judged.
    # Only its base64 here: the JSON inside is parsed after the signature is checked.
    if not dot:
        raise MalformedTokenError("a compact JWS has exactly three dot-separated parts")
    try:
        payload_json = b64url_decode(payload_seg)
    except ValueError:
        if b"." in payload_seg:
            raise MalformedTokenError(
                "a compact JWS has exactly three dot-separated parts"
            ) from None
        raise MalformedTokenError("payload is not valid base64url") from None
    if not header_seg or not sig_seg:
        raise MalformedTokenError("empty header or signature")
    if len(header_seg) > MAX_HEADER_SEGMENT or len(sig_seg) > MAX_SIGNATURE_SEGMENT:
        raise TokenTooLargeError("header or signature segment too large")
    try:
        signature = b64url_decode(sig_seg)
    except ValueError:
        raise MalformedTokenError("signature is not valid base64url") from None
    cached = _HEADERS.get(header_seg)
    if cached is None:
        cached = _parse_header(header_seg)
    header, alg_name, alg, kid = cached
    if alg is None or alg not in allowed_algs:
        raise AlgorithmNotAllowedError(f"algorithm {alg_name!r} is not allowed")
    # tuple.__new__ directly: NamedTuple's generated __new__ is one more Python frame per token.
    return _new_tuple(ParsedToken, (header, alg, kid, signing_input, payload_json, signature))


_new_tuple = tuple.__new__
_HeaderInfo = tuple[dict[str, Any], object, Alg | None, str | None]
# Tokens from one key share one protected header: parse each distinct header once. Only
# headers that passed every check are cached; the cache is bounded and simply cleared when
# full, so a flood of distinct headers costs memory no larger than MAX_CACHED_HEADERS entries.
_HEADERS: dict[bytes, _HeaderInfo] = {}
MAX_CACHED_HEADERS = 256


def _parse_header(header_seg: bytes) -> _HeaderInfo:
    try:
        header = orjson.loads(b64url_decode(header_seg))
    except (ValueError, orjson.JSONDecodeError):
        raise MalformedTokenError("header is not valid base64url / JSON") from None
    if not isinstance(header, dict):
        raise MalformedTokenError("header is not a JSON object")
    alg_name = header.get("alg")
    alg = _ALG_BY_NAME.get(alg_name) if isinstance(alg_name, str) else None
    if alg is None:
        raise AlgorithmNotAllowedError(f"algorithm {alg_name!r} is not allowed")
    if "crit" in header:
        raise UnsupportedHeaderError("'crit' header: keyturn understands no JWS extension")
    if "b64" in header:
        raise UnsupportedHeaderError("'b64' header (RFC 7797 unencoded payload) is not accepted")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
        raise MalformedTokenError("'kid' must be a string of at most 256 characters")
    info: _HeaderInfo = (header, alg_name, alg, kid)
    if len(_HEADERS) >= MAX_CACHED_HEADERS:
        _HEADERS.clear()
    _HEADERS[header_seg] = info
    return info


def verify_parsed(parsed: ParsedToken, key: VerifyingKey) -> None:
    """Raise ``BadSignatureError`` unless the signature is valid for the token's algorithm."""
    # Same logic as VerifyingKey.verify, one frame shallower: this runs once per token.
    check = key._checks.get(parsed.alg)
    if check is None:
        raise AlgorithmNotAllowedError(
            f"key {key.kid} does not sign with {parsed.alg.value} "
            f"(it uses {', '.join(sorted(a.value for a in key.algs))})"
        )
    try:
        check(parsed.signature, parsed.signing_input)
    except (InvalidSignature, ValueError):
        raise BadSignatureError(f"signature does not verify with key {key.kid}") from None


def encode_segment(obj: dict[str, Any]) -> bytes:
    return b64url_encode(orjson.dumps(obj))


def sign_compact(header_segment: bytes, claims: dict[str, Any], key: RawSigner) -> str:
    """``header_segment`` is the pre-encoded protected header (with its trailing dot stripped)."""
    signing_input = header_segment + b"." + b64url_encode(orjson.dumps(claims))
    return (signing_input + b"." + b64url_encode(key.sign(signing_input))).decode("ascii")
