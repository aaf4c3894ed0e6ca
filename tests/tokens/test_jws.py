"""Compact JWS sign/verify, interoperability with PyJWT and joserfc, and parser robustness."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import jwt as pyjwt
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt
from joserfc.jwt import JWTClaimsRegistry

from keyturn.errors import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    MalformedTokenError,
    TokenError,
    TokenTooLargeError,
)
from keyturn.keys.algorithms import SPECS, Alg
from keyturn.keys.b64 import b64url_decode, b64url_encode
from keyturn.tokens.jws import (
    DEFAULT_MAX_TOKEN_BYTES,
    SigningKey,
    VerifyingKey,
    parse_compact,
    verify_parsed,
)
from keyturn.tokens.signer import TokenSigner, issue_claims
from keyturn.tokens.verify import verify_token
from tests.keys.material import (
    ALL_ALGS,
    joserfc_eddsa_allowed,
    jwk_of,
    keyset_of,
    private_key,
    signer_of,
)

ALG_IDS = [pytest.param(a, id=a.value) for a in ALL_ALGS]


def fresh_claims() -> dict[str, Any]:
    now = int(time.time())
    return issue_claims({"sub": "user-1", "scope": "read"}, issuer="https://iss", now=now, ttl=300)


def pyjwt_decode(token: str, jwk: dict[str, Any], alg: Alg) -> dict[str, Any]:
    claims: dict[str, Any] = pyjwt.decode(
        token, pyjwt.PyJWK(jwk).key, algorithms=[alg.value], options={"verify_aud": False}
    )
    return claims


def joserfc_decode(token: str, jwk: dict[str, Any], alg: Alg) -> dict[str, Any]:
    with joserfc_eddsa_allowed():
        decoded = joserfc_jwt.decode(token, joserfc_jwk.import_key(jwk), algorithms=[alg.value])  # type: ignore[call-overload]
    JWTClaimsRegistry().validate(decoded.claims)
    claims: dict[str, Any] = decoded.claims
    return claims


@pytest.mark.parametrize("alg", ALG_IDS)
def test_sign_verify(alg: Alg) -> None:
    signer = signer_of(alg)
    claims = fresh_claims()
    token = signer.sign(claims)
    got, parsed = verify_token(
        token, keyset_of(jwk_of(alg)), algorithms=[alg], now=time.time(), issuer="https://iss"
    )
    assert got == claims
    assert parsed.header == {"alg": alg.value, "kid": signer.kid, "typ": "JWT"}
    assert parsed.kid == signer.kid
    # bytes tokens are accepted as well as str.
    assert verify_token(token.encode(), keyset_of(jwk_of(alg)), algorithms=[alg], now=time.time())


@pytest.mark.parametrize("alg", ALG_IDS)
def test_ecdsa_and_eddsa_signatures_have_jws_length(alg: Alg) -> None:
    token = signer_of(alg).sign({"exp": 1})
    sig = b64url_decode(token.rsplit(".", 1)[1])
    spec = SPECS[alg]
    expected = {"ecdsa": 2 * spec.coord_size, "eddsa": 64}.get(spec.family, 256)
    assert len(sig) == expected


@pytest.mark.parametrize("alg", ALG_IDS)
def test_keyturn_tokens_verify_with_pyjwt_and_joserfc(alg: Alg) -> None:
    claims = fresh_claims()
    token = signer_of(alg).sign(claims)
    jwk = jwk_of(alg)  # only the public JWK crosses over
    assert pyjwt_decode(token, jwk, alg) == claims
    assert joserfc_decode(token, jwk, alg) == claims


@pytest.mark.parametrize("alg", ALG_IDS)
def test_pyjwt_tokens_verify_with_keyturn(alg: Alg) -> None:
    jwk = jwk_of(alg)
    claims = fresh_claims()
    token = pyjwt.encode(claims, private_key(alg), algorithm=alg.value, headers={"kid": jwk["kid"]})
    got, _ = verify_token(token, keyset_of(jwk), algorithms=[alg], now=time.time())
    assert got == claims


@pytest.mark.parametrize("alg", ALG_IDS)
def test_joserfc_tokens_verify_with_keyturn(alg: Alg) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    jwk = jwk_of(alg)
    pem = private_key(alg).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    claims = fresh_claims()
    with joserfc_eddsa_allowed():
        key = joserfc_jwk.import_key(pem, jwk["kty"])  # type: ignore[call-overload]
        token = joserfc_jwt.encode(
            {"alg": alg.value, "kid": jwk["kid"]}, claims, key, algorithms=[alg.value]
        )
    got, _ = verify_token(token, keyset_of(jwk), algorithms=[alg], now=time.time())
    assert got == claims


@pytest.mark.parametrize("alg", ALG_IDS)
def test_wrong_key_is_a_bad_signature(alg: Alg) -> None:
    token = signer_of(alg, slot=0).sign({"exp": 2})
    parsed = parse_compact(token, allowed_algs={alg})
    other = VerifyingKey(private_key(alg, slot=1).public_key(), [alg], "other")
    with pytest.raises(BadSignatureError):
        verify_parsed(parsed, other)


def test_verifying_key_refuses_algorithms_it_was_not_given() -> None:
    key = private_key(Alg.RS256)
    signing_input = b"a.b"
    sig = SigningKey(key, Alg.PS256).sign(signing_input)
    vk = VerifyingKey(key.public_key(), [Alg.RS256])
    assert not vk.verify(Alg.PS256, sig, signing_input)
    assert VerifyingKey(key.public_key(), [Alg.RS256, Alg.PS256]).verify(
        Alg.PS256, sig, signing_input
    )


def test_signer_adds_nothing_and_issue_claims_adds_registered_claims() -> None:
    signer = TokenSigner(private_key(Alg.ES256), Alg.ES256, "k", typ="at+jwt")
    parsed = parse_compact(signer.sign({"a": 1}), allowed_algs={Alg.ES256})
    assert parsed.payload() == {"a": 1}
    assert parsed.header["typ"] == "at+jwt"
    claims = issue_claims({"jti": "mine"}, issuer="i", now=100, ttl=50, not_before=90)
    assert claims == {"jti": "mine", "iss": "i", "iat": 100, "nbf": 90, "exp": 150}
    assert len(issue_claims({}, issuer="i", now=1, ttl=1)["jti"]) >= 16


@pytest.mark.parametrize(
    ("token", "error"),
    [
        pytest.param("", MalformedTokenError, id="empty"),
        pytest.param("a.b", MalformedTokenError, id="two-parts"),
        pytest.param("a.b.c.d", MalformedTokenError, id="four-parts"),
        pytest.param(".b.c", MalformedTokenError, id="empty-header"),
        pytest.param("eyJhbGciOiJFUzI1NiJ9.e30.", MalformedTokenError, id="empty-signature"),
        pytest.param("eyJhbGciOiJFUzI1NiJ9=.e30.AA", MalformedTokenError, id="padded-header"),
        pytest.param("WzFd.e30.AA", MalformedTokenError, id="header-is-array"),
        pytest.param("bm90IGpzb24.e30.AA", MalformedTokenError, id="header-not-json"),
        pytest.param("e30.e30.AA", AlgorithmNotAllowedError, id="no-alg"),
        pytest.param("eyJhbGciOjF9.e30.AA", AlgorithmNotAllowedError, id="alg-not-string"),
        pytest.param(
            "eyJhbGciOiJFUzI1NiIsImtpZCI6MX0.e30.AA", MalformedTokenError, id="kid-not-string"
        ),
        pytest.param("é.e30.AA", MalformedTokenError, id="non-ascii"),
    ],
)
def test_parse_compact_refuses(token: str, error: type[TokenError]) -> None:
    with pytest.raises(error):
        parse_compact(token, allowed_algs=set(Alg))


def test_payload_must_be_a_json_object() -> None:
    signer = signer_of(Alg.ES256)
    header, _, _ = signer.sign({}).split(".")
    for payload in (b64url_encode(b"[1]"), b64url_encode(b"not json"), b"", b"e30="):
        token = header.encode() + b"." + payload + b".AAAA"
        with pytest.raises(MalformedTokenError):
            parse_compact(token, allowed_algs={Alg.ES256}).payload()


def test_extra_parts_are_named_even_behind_a_valid_header() -> None:
    # The dot check rides on the strict payload decode: a JWE (five parts) or a four-part
    # token with a good header must still be called what it is, not a payload or alg error.
    header, payload, sig = signer_of(Alg.ES256).sign({}).split(".")
    jwe_header = b64url_encode(orjson.dumps({"alg": "RSA-OAEP", "enc": "A256GCM"})).decode()
    for token in (
        f"{header}.{payload}.x.{sig}",
        f"{jwe_header}.ek.iv.ct.tag",
        "a.b.c.d",  # every part bad: still named for its parts first
        f"{header}.{payload}.{sig}.",  # a trailing dot: an empty fourth part
    ):
        with pytest.raises(MalformedTokenError, match="three dot-separated parts"):
            parse_compact(token, allowed_algs=set(Alg))


def test_buffers_parse_like_bytes_and_other_types_are_a_token_error() -> None:
    token = signer_of(Alg.ES256).sign({"sub": "u"})
    want = parse_compact(token, allowed_algs={Alg.ES256})
    for buf in (bytearray(token.encode()), memoryview(token.encode())):
        assert parse_compact(buf, allowed_algs={Alg.ES256}) == want  # type: ignore[arg-type]
    too_big = memoryview(bytearray(b"a" * 64)).cast("Q")  # 8 items, 64 bytes
    with pytest.raises(TokenTooLargeError):
        parse_compact(too_big, allowed_algs={Alg.ES256}, max_token_bytes=32)  # type: ignore[arg-type]
    for other in (None, 5, ["a.b.c"]):
        with pytest.raises(MalformedTokenError, match="str or bytes"):
            parse_compact(other, allowed_algs={Alg.ES256})  # type: ignore[arg-type]


def test_payload_encoding_is_refused_at_parse_before_any_signature_check() -> None:
    header, _, sig = signer_of(Alg.ES256).sign({}).split(".")
    for payload in ("e30=", "e3+", "e30!", "e31"):  # padding, '+', foreign, non-canonical
        with pytest.raises(MalformedTokenError, match="payload is not valid base64url"):
            parse_compact(f"{header}.{payload}.{sig}", allowed_algs={Alg.ES256})


def test_long_kid_refused() -> None:
    token = signer_of(Alg.ES256).sign({})
    header = b64url_encode(orjson.dumps({"alg": "ES256", "kid": "k" * 257}))
    with pytest.raises(MalformedTokenError, match="kid"):
        parse_compact(header + b"." + token.split(".", 1)[1].encode(), allowed_algs={Alg.ES256})


B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
segment = st.text(alphabet=B64_CHARS + "=+/. ", max_size=60)
json_header = st.dictionaries(
    st.sampled_from(["alg", "kid", "crit", "b64", "typ", "jwk", "x"]),
    st.one_of(
        st.sampled_from([a.value for a in Alg] + ["none", "HS256"]),
        st.none(),
        st.booleans(),
        st.integers(),
        st.lists(st.text(max_size=3), max_size=2),
        st.text(max_size=300),
    ),
)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parse_compact_raises_only_token_errors_on_anything(token: str | bytes) -> None:
    with contextlib.suppress(TokenError):
        parse_compact(token, allowed_algs=set(Alg), max_token_bytes=DEFAULT_MAX_TOKEN_BYTES)


@settings(max_examples=300)
@given(json_header, segment, segment, st.binary(max_size=300))
def test_parse_and_verify_raise_only_token_errors_on_near_tokens(
    header: dict[str, Any], payload: str, sig: str, raw_sig: bytes
) -> None:
    head = b64url_encode(json.dumps(header).encode()).decode()
    keyset = keyset_of(jwk_of(Alg.ES256), jwk_of(Alg.EdDSA))
    for s in (sig, b64url_encode(raw_sig).decode()):
        with contextlib.suppress(TokenError):
            verify_token(f"{head}.{payload}.{s}", keyset, algorithms=set(Alg), now=0.0)
