"""JWK export and import, and the RFC 7638 thumbprint used as kid, driven by RFC vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyturn.errors import InvalidKeyError
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_encode
from keyturn.keys.jwk import (
    PRIVATE_MEMBERS,
    private_key_from_jwk,
    public_jwk,
    public_key_from_jwk,
    public_params,
    thumbprint,
    thumbprint_of_params,
)
from keyturn.tokens.jws import SigningKey, VerifyingKey, encode_segment, parse_compact
from tests.keys.material import ALL_ALGS, jwk_of, private_jwk, private_key

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def test_rfc7638_example_rsa_thumbprint() -> None:
    vec = vector("rfc7638_rsa.json")
    key = public_key_from_jwk(vec["jwk"])
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    assert thumbprint(key) == vec["thumbprint"]
    # Members other than the required ones (alg, kid) do not enter the thumbprint.
    required = {k: vec["jwk"][k] for k in ("e", "kty", "n")}
    assert thumbprint_of_params(required) == vec["thumbprint"]
    assert public_params(key) == required


def test_rfc8037_ed25519_key_and_thumbprint() -> None:
    vec = vector("rfc8037_ed25519.json")
    key = private_key_from_jwk(vec["private_jwk"])
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert public_params(key)["x"] == vec["private_jwk"]["x"]
    assert thumbprint(key) == vec["thumbprint"]
    assert public_jwk(key, Alg.EdDSA)["kid"] == vec["thumbprint"]


def test_rfc8037_ed25519_signature_is_reproduced_exactly() -> None:
    # Ed25519 is deterministic, so keyturn's signer must produce the RFC's bytes exactly.
    vec = vector("rfc8037_ed25519.json")
    key = private_key_from_jwk(vec["private_jwk"])
    header = encode_segment(vec["protected_header"])
    assert header.decode() == vec["protected_segment"]
    payload = b64url_encode(vec["payload"].encode())
    assert payload.decode() == vec["payload_segment"]
    signing_input = header + b"." + payload
    signature = SigningKey(key, Alg.EdDSA).sign(signing_input)
    assert (signing_input + b"." + b64url_encode(signature)).decode() == vec["jws"]

    parsed = parse_compact(vec["jws"], allowed_algs={Alg.EdDSA})
    assert VerifyingKey(key.public_key(), [Alg.EdDSA]).verify(
        parsed.alg, parsed.signature, parsed.signing_input
    )


@pytest.mark.parametrize("alg", [pytest.param(a, id=a.value) for a in ALL_ALGS])
def test_public_jwk_has_no_private_members(alg: Alg) -> None:
    key = private_key(alg)
    jwk = public_jwk(key, alg)
    assert not PRIVATE_MEMBERS & jwk.keys()
    assert jwk["kid"] == thumbprint(key) == thumbprint(key.public_key())
    assert jwk["use"] == "sig"
    assert jwk["alg"] == alg.value
    allowed = {"kty", "kid", "use", "alg", "n", "e", "crv", "x", "y"}
    assert set(jwk) <= allowed


def test_public_jwk_keeps_explicit_kid_and_certificate_members() -> None:
    jwk = public_jwk(private_key(Alg.ES256), Alg.ES256, kid="k1", x5c=["MIIB"], x5t_s256="abc")
    assert jwk["kid"] == "k1"
    assert jwk["x5c"] == ["MIIB"]
    assert jwk["x5t#S256"] == "abc"


@pytest.mark.parametrize("alg", [pytest.param(a, id=a.value) for a in ALL_ALGS])
def test_public_key_from_jwk_round_trip(alg: Alg) -> None:
    key = private_key(alg)
    jwk = public_jwk(key, alg)
    pub = public_key_from_jwk(jwk)
    assert public_params(pub) == public_params(key)
    assert thumbprint(pub) == jwk["kid"]


def test_public_key_from_jwk_ignores_private_members() -> None:
    key = private_key(Alg.ES256)
    pub = public_key_from_jwk(private_jwk(key))
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    assert public_params(pub) == public_params(key)


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param({"kty": "oct", "k": "AAAA"}, id="symmetric"),
        pytest.param({"n": "AQAB", "e": "AQAB"}, id="no-kty"),
        pytest.param({"kty": "RSA", "e": "AQAB"}, id="rsa-no-n"),
        pytest.param({"kty": "RSA", "n": "AQAB=", "e": "AQAB"}, id="rsa-padded-n"),
        pytest.param({"kty": "EC", "crv": "P-256K", "x": "AA", "y": "AA"}, id="ec-unknown-curve"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}, id="ec-point-off-curve"),
        pytest.param({"kty": "OKP", "crv": "X25519", "x": "AA"}, id="okp-x25519"),
        pytest.param({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, id="okp-short-x"),
        pytest.param({"kty": "OKP", "crv": "Ed25519"}, id="okp-no-x"),
    ],
)
def test_public_key_from_jwk_refuses(jwk: dict[str, Any]) -> None:
    with pytest.raises(InvalidKeyError):
        public_key_from_jwk(jwk)


@pytest.mark.parametrize(
    ("alg", "crt"),
    [
        pytest.param(Alg.RS256, True, id="rsa-with-crt"),
        pytest.param(Alg.RS256, False, id="rsa-without-crt"),
        pytest.param(Alg.ES256, True, id="p256"),
        pytest.param(Alg.ES384, True, id="p384"),
        pytest.param(Alg.ES512, True, id="p521"),
        pytest.param(Alg.EdDSA, True, id="ed25519"),
    ],
)
def test_private_key_from_jwk(alg: Alg, crt: bool) -> None:
    key = private_key(alg)
    loaded = private_key_from_jwk(private_jwk(key, crt=crt))
    assert thumbprint(loaded) == thumbprint(key)
    if isinstance(key, rsa.RSAPrivateKey):
        assert isinstance(loaded, rsa.RSAPrivateKey)
        # Without CRT members the primes are recovered from (n, e, d): same private key.
        assert loaded.private_numbers() == key.private_numbers()


def test_private_key_from_jwk_refuses_mismatched_ec_coordinates() -> None:
    jwk = private_jwk(private_key(Alg.ES256))
    other = private_jwk(private_key(Alg.ES256, slot=1))
    for member in ("x", "y"):
        with pytest.raises(InvalidKeyError, match="do not match"):
            private_key_from_jwk(jwk | {member: other[member]})
    with pytest.raises(InvalidKeyError, match="do not match"):
        private_key_from_jwk({k: v for k, v in jwk.items() if k != "y"})


def test_private_key_from_jwk_refuses_mismatched_okp_x() -> None:
    jwk = private_jwk(private_key(Alg.EdDSA))
    other = private_jwk(private_key(Alg.EdDSA, slot=1))
    with pytest.raises(InvalidKeyError, match="does not match"):
        private_key_from_jwk(jwk | {"x": other["x"]})


def test_private_key_from_jwk_refuses_inconsistent_rsa_crt() -> None:
    jwk = private_jwk(private_key(Alg.RS256))
    other = private_jwk(private_key(Alg.RS256, slot=1))
    with pytest.raises(InvalidKeyError):
        private_key_from_jwk(jwk | {"p": other["p"], "q": other["q"]})


@pytest.mark.parametrize("alg", [pytest.param(a, id=a.value) for a in (Alg.RS256, Alg.ES256)])
def test_private_key_from_jwk_refuses_public_only(alg: Alg) -> None:
    with pytest.raises(InvalidKeyError, match="public-only"):
        private_key_from_jwk(jwk_of(alg))


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param({"kty": "EC", "crv": "P-256", "d": "AA"}, id="ec-zero-scalar"),
        pytest.param({"kty": "EC", "crv": "P-256", "d": "not base64!"}, id="ec-bad-d"),
        pytest.param({"kty": "EC", "crv": "secp256k1", "d": "AQ"}, id="ec-unknown-curve"),
        pytest.param({"kty": "OKP", "crv": "Ed25519", "d": "AQ"}, id="okp-short-d"),
        pytest.param({"kty": "OKP", "crv": "Ed25519", "d": 7}, id="okp-d-not-string"),
        pytest.param({"kty": "OKP", "crv": "Ed448", "d": "AQ"}, id="okp-ed448"),
        pytest.param({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQ"}, id="rsa-garbage"),
        pytest.param({"kty": "oct", "d": "AQ"}, id="unknown-kty"),
    ],
)
def test_private_key_from_jwk_refuses_malformed(jwk: dict[str, Any]) -> None:
    with pytest.raises(InvalidKeyError):
        private_key_from_jwk(jwk)
