"""The JWS parser's refusals and limits, stated with literal values (issue #20).

Written against the survivors of the 2026-12-02 mutation run (docs/mutation.md): every
refusal has its exact class and message, every size limit is tested at the limit and one past
it, and ``VerifyingKey.verify`` answers False (never True) for a bad signature.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from keyturn import errors as E
from keyturn.keys.algorithms import Alg
from keyturn.tokens import jws
from keyturn.tokens.jws import VerifyingKey, parse_compact
from tests.keys.material import private_key, sign_with_header, signer_of

ES = frozenset({Alg.ES256})


@pytest.fixture(autouse=True)
def no_cached_headers() -> None:
    """Each test parses its headers itself: the parser, not the header cache, is under test."""
    jws._HEADERS.clear()


def seg(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HEADER = seg({"alg": "ES256", "kid": "k1"})
PAYLOAD = seg({"sub": "a"})
SIG = seg(b"s" * 64)


def token(header: str = HEADER, payload: str = PAYLOAD, sig: str = SIG) -> str:
    return f"{header}.{payload}.{sig}"


REFUSALS: list[tuple[str, Any, type[Exception], str]] = [
    ("non-ASCII", token() + "é", E.MalformedTokenError, "token contains non-ASCII characters"),
    ("not str or bytes", 12345, E.MalformedTokenError, "a token is str or bytes, not int"),
    ("a list", ["a"], E.MalformedTokenError, "a token is str or bytes, not list"),
    (
        "two parts",
        f"{HEADER}.{PAYLOAD}",
        E.MalformedTokenError,
        "a compact JWS has exactly three dot-separated parts",
    ),
    (
        "four parts",
        token() + ".x",
        E.MalformedTokenError,
        "a compact JWS has exactly three dot-separated parts",
    ),
    (
        "one part",
        HEADER,
        E.MalformedTokenError,
        "a compact JWS has exactly three dot-separated parts",
    ),
    (
        "payload not base64url",
        token(payload="a*b"),
        E.MalformedTokenError,
        "payload is not valid base64url",
    ),
    ("empty header", token(header=""), E.MalformedTokenError, "empty header or signature"),
    ("empty signature", token(sig=""), E.MalformedTokenError, "empty header or signature"),
    (
        "signature not base64url",
        token(sig="a*b"),
        E.MalformedTokenError,
        "signature is not valid base64url",
    ),
    (
        "header not base64/JSON",
        token(header="!!!"),
        E.MalformedTokenError,
        "header is not valid base64url / JSON",
    ),
    (
        "header JSON not an object",
        token(header=seg([1, 2])),
        E.MalformedTokenError,
        "header is not a JSON object",
    ),
    (
        "alg none",
        token(header=seg({"alg": "none"})),
        E.AlgorithmNotAllowedError,
        "algorithm 'none' is not allowed",
    ),
    (
        "alg missing",
        token(header=seg({"kid": "k1"})),
        E.AlgorithmNotAllowedError,
        "algorithm None is not allowed",
    ),
    (
        "alg not in the allowed set",
        token(header=seg({"alg": "RS256"})),
        E.AlgorithmNotAllowedError,
        "algorithm 'RS256' is not allowed",
    ),
    (
        "crit",
        token(header=seg({"alg": "ES256", "crit": ["exp"]})),
        E.UnsupportedHeaderError,
        "'crit' header: keyturn understands no JWS extension",
    ),
    (
        "b64",
        token(header=seg({"alg": "ES256", "b64": False})),
        E.UnsupportedHeaderError,
        "'b64' header (RFC 7797 unencoded payload) is not accepted",
    ),
    (
        "kid of 257 characters",
        token(header=seg({"alg": "ES256", "kid": "k" * 257})),
        E.MalformedTokenError,
        "'kid' must be a string of at most 256 characters",
    ),
    (
        "kid a number",
        token(header=seg({"alg": "ES256", "kid": 7})),
        E.MalformedTokenError,
        "'kid' must be a string of at most 256 characters",
    ),
]


@pytest.mark.parametrize(
    ("value", "error", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_parse_refusal_has_its_class_and_exact_message(
    value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        parse_compact(value, allowed_algs=ES)
    assert type(info.value) is error
    assert info.value.detail == message  # type: ignore[attr-defined]


@pytest.mark.parametrize("payload", [b"{nope", b"[1, 2]", b'"text"'], ids=["bad", "list", "str"])
def test_payload_refusals_have_exact_messages(payload: bytes) -> None:
    parsed = parse_compact(token(payload=seg(payload)), allowed_algs=ES)
    with pytest.raises(E.MalformedTokenError) as info:
        parsed.payload()
    expected = "payload is not JSON" if payload == b"{nope" else "payload is not a JSON object"
    assert info.value.detail == expected


def _sized(n: int) -> str:
    """A well-formed token of exactly ``n`` bytes (a padded claim, a signature of 64-66 bytes:
    base64url lengths skip every value = 1 mod 4, so two parts are varied)."""
    for extra in range(n):
        for sig_bytes in (64, 65, 66):
            t = token(payload=seg({"p": "x" * extra}), sig=seg(b"s" * sig_bytes))
            if len(t) == n:
                return t
    raise AssertionError(f"cannot build a token of {n} bytes")


@pytest.mark.parametrize("kind", ["str", "bytes", "bytearray", "memoryview"])
def test_the_size_limit_is_inclusive(kind: str) -> None:
    limit = 2000
    for size, refused in ((limit - 1, False), (limit, False), (limit + 1, True)):
        # a token of exactly `size` bytes, in the requested container
        t = _sized(size) if size != limit + 1 else _sized(limit - 1) + "xx"
        assert len(t) == size
        value: Any = {
            "str": t,
            "bytes": t.encode(),
            "bytearray": bytearray(t.encode()),
            "memoryview": memoryview(t.encode()),
        }[kind]
        if refused:
            with pytest.raises(E.TokenTooLargeError) as info:
                parse_compact(value, allowed_algs=ES, max_token_bytes=limit)
            assert info.value.detail == "token longer than 2000 bytes"
        else:
            parse_compact(value, allowed_algs=ES, max_token_bytes=limit)


def test_the_default_size_limit_is_16_kib() -> None:
    parse_compact(_sized(16384), allowed_algs=ES)
    with pytest.raises(E.TokenTooLargeError) as info:
        parse_compact(_sized(16383) + "xx", allowed_algs=ES)
    assert info.value.detail == "token longer than 16384 bytes"


def test_a_kid_of_exactly_256_characters_is_accepted() -> None:
    parsed = parse_compact(token(header=seg({"alg": "ES256", "kid": "k" * 256})), allowed_algs=ES)
    assert parsed.kid == "k" * 256


def test_verifying_key_verify_says_false_for_every_bad_signature() -> None:
    key = private_key(Alg.ES256, 0)
    vk = VerifyingKey(key.public_key(), [Alg.ES256], kid="k0")  # type: ignore[arg-type]
    assert (vk.key, vk.kid, vk.algs) == (key.public_key(), "k0", frozenset({Alg.ES256}))
    good = signer_of(Alg.ES256).sign({"sub": "a"})
    signing_input, _, sig = good.encode().rpartition(b".")
    signature = base64.urlsafe_b64decode(sig + b"=" * (-len(sig) % 4))
    assert vk.verify(Alg.ES256, signature, signing_input) is True
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert vk.verify(Alg.ES256, tampered, signing_input) is False  # InvalidSignature
    assert vk.verify(Alg.ES256, signature, signing_input + b"x") is False
    assert vk.verify(Alg.ES256, signature[:10], signing_input) is False  # wrong length
    assert vk.verify(Alg.ES256, b"", signing_input) is False
    assert vk.verify(Alg.ES384, signature, signing_input) is False  # not this key's alg
    other = sign_with_header({"alg": "ES256"}, {"sub": "a"}, private_key(Alg.ES256, 1), Alg.ES256)
    o_input, _, o_sig = other.encode().rpartition(b".")
    assert vk.verify(Alg.ES256, base64.urlsafe_b64decode(o_sig + b"=="), o_input) is False


def test_a_bad_signature_names_the_key_it_was_checked_with() -> None:
    from keyturn.tokens.jws import verify_parsed

    vk = VerifyingKey(private_key(Alg.ES256, 1).public_key(), [Alg.ES256], kid="other")  # type: ignore[arg-type]
    parsed = parse_compact(signer_of(Alg.ES256).sign({"sub": "a"}), allowed_algs=ES)
    with pytest.raises(E.BadSignatureError) as info:
        verify_parsed(parsed, vk)
    assert info.value.detail == "signature does not verify with key other"
    p384 = private_key(Alg.ES384, 0).public_key()
    with pytest.raises(E.AlgorithmNotAllowedError) as wrong:
        verify_parsed(parsed, VerifyingKey(p384, [Alg.ES384], kid="p384"))  # type: ignore[arg-type]
    assert wrong.value.detail == "key p384 does not sign with ES256 (it uses ES384)"


def test_header_and_signature_segment_limits_are_inclusive() -> None:
    def header_of(n: int) -> str:
        for pad in range(n):
            h = seg({"alg": "ES256", "x": "y" * pad})
            if len(h) == n:
                return h
        raise AssertionError(n)

    parse_compact(token(header=header_of(4096)), allowed_algs=ES)
    sig_1024 = "A" * 1024  # base64url of 768 bytes
    parse_compact(token(sig=sig_1024), allowed_algs=ES)
    # One past each limit (the sizes are checked before either segment is decoded).
    for too_big in (token(header="e" * 4097), token(sig="A" * 1025)):
        with pytest.raises(E.TokenTooLargeError) as info:
            parse_compact(too_big, allowed_algs=ES)
        assert info.value.detail == "header or signature segment too large"


def test_a_memoryview_of_wide_items_is_measured_in_bytes() -> None:
    raw = _sized(2000).encode()  # 2000 bytes: 1000 items of 2 bytes
    wide = memoryview(raw).cast("H")
    assert len(wide) == 1000
    with pytest.raises(E.TokenTooLargeError) as info:
        parse_compact(wide, allowed_algs=ES, max_token_bytes=1500)
    assert info.value.detail == "token longer than 1500 bytes"
    parse_compact(wide, allowed_algs=ES, max_token_bytes=2000)
