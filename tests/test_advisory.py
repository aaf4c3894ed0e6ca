"""One regression test per published JWT attack class (as PyJWT keeps for its advisories)."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyturn.errors import (
    AlgorithmNotAllowedError,
    BadSignatureError,
    MalformedTokenError,
    TokenError,
    TokenTooLargeError,
    UnknownKidError,
    UnsupportedHeaderError,
)
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_decode, b64url_encode
from keyturn.keys.jwk import public_jwk, thumbprint
from keyturn.tokens.keyset import KeySet
from keyturn.tokens.verify import verify_token
from tests.keys.material import jwk_of, keyset_of, private_key, sign_with_header, signer_of

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
EVERY_ALG = frozenset(Alg)


def claims() -> dict[str, Any]:
    return {"sub": "admin", "exp": int(time.time()) + 600}


def verify(token: str | bytes, keyset: KeySet, algorithms: Any = EVERY_ALG) -> dict[str, Any]:
    return verify_token(token, keyset, algorithms=algorithms, now=time.time())[0]


def seg(obj: Any) -> bytes:
    return b64url_encode(orjson.dumps(obj))


def with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64url_encode(signature).decode()


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection (to jku, x5u...) fails the test, not just the token."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert attempts == []


def test_sanity_a_genuine_token_verifies() -> None:
    token = signer_of(Alg.RS256).sign(claims())
    assert verify(token, keyset_of(jwk_of(Alg.RS256)))["sub"] == "admin"


# -- alg "none" (CVE-2015-9235 class) ---------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize(
    ("signature", "error"),
    [
        pytest.param(b"", MalformedTokenError, id="empty-signature"),
        pytest.param(b"junk", AlgorithmNotAllowedError, id="junk-signature"),
    ],
)
def test_alg_none_rejected(alg: str, signature: bytes, error: type[TokenError]) -> None:
    jwk = jwk_of(Alg.RS256)
    token = seg({"alg": alg, "kid": jwk["kid"]}) + b"." + seg(claims()) + b"."
    token += b64url_encode(signature)
    with pytest.raises(error):
        verify(token, keyset_of(jwk))


# -- HS256 keyed with the RSA public key (algorithm confusion, CVE-2016-10555 / CVE-2022-29217)


@pytest.mark.parametrize(
    "secret_form",
    ["pem-spki", "pem-pkcs1", "der", "jwk-json", "openssh"],
)
@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_public_key_rejected(secret_form: str, hs: str) -> None:
    key = private_key(Alg.RS256)
    pub = key.public_key()
    secret = {
        "pem-spki": pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "pem-pkcs1": pub.public_bytes(Encoding.PEM, PublicFormat.PKCS1),
        "der": pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        "jwk-json": orjson.dumps(jwk_of(Alg.RS256)),
        "openssh": pub.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH),
    }[secret_form]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hs]
    signing_input = seg({"alg": hs, "kid": thumbprint(key)}) + b"." + seg(claims())
    mac = hmac.new(secret, signing_input, digest).digest()
    token = signing_input + b"." + b64url_encode(mac)
    with pytest.raises(AlgorithmNotAllowedError):
        verify(token, keyset_of(jwk_of(Alg.RS256)))


# -- algorithm allow-list and key/alg binding -------------------------------------------------


def test_alg_not_in_allow_list_rejected() -> None:
    token = signer_of(Alg.ES256).sign(claims())
    with pytest.raises(AlgorithmNotAllowedError):
        verify(token, keyset_of(jwk_of(Alg.ES256)), algorithms=[Alg.RS256, Alg.EdDSA])
    with pytest.raises(AlgorithmNotAllowedError):
        verify(token, keyset_of(jwk_of(Alg.ES256)), algorithms=[])


@pytest.mark.parametrize(
    ("key_alg", "token_alg"),
    [
        pytest.param(Alg.RS256, Alg.PS256, id="rs256-key-ps256-token"),
        pytest.param(Alg.PS256, Alg.RS256, id="ps256-key-rs256-token"),
        pytest.param(Alg.RS256, Alg.RS512, id="rs256-key-rs512-token"),
    ],
)
def test_token_alg_must_match_the_keys_alg(key_alg: Alg, token_alg: Alg) -> None:
    # The same RSA key signs with the token's algorithm: the signature is valid, yet the
    # published JWK says the key is only for key_alg.
    key = private_key(key_alg)
    token = sign_with_header(
        {"alg": token_alg.value, "kid": thumbprint(key)}, claims(), key, token_alg
    )
    with pytest.raises(AlgorithmNotAllowedError, match="does not sign with"):
        verify(token, keyset_of(jwk_of(key_alg)))


def test_es384_header_on_es256_key_rejected() -> None:
    p256 = jwk_of(Alg.ES256)
    p384 = private_key(Alg.ES384)
    token = sign_with_header({"alg": "ES384", "kid": p256["kid"]}, claims(), p384, Alg.ES384)
    with pytest.raises(AlgorithmNotAllowedError):
        verify(token, keyset_of(p256))


def test_jwk_without_alg_is_narrowed_by_the_allow_list() -> None:
    jwk = {k: v for k, v in jwk_of(Alg.RS256).items() if k != "alg"}
    key = private_key(Alg.RS256)
    token = sign_with_header({"alg": "PS256", "kid": jwk["kid"]}, claims(), key, Alg.PS256)
    with pytest.raises(AlgorithmNotAllowedError):
        verify(token, keyset_of(jwk), algorithms=[Alg.RS256])
    assert verify(token, keyset_of(jwk), algorithms=[Alg.PS256])  # explicitly allowed: fine


# -- JWS extensions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"crit": ["exp"], "exp": 1}, id="crit-unknown"),
        pytest.param({"crit": []}, id="crit-empty"),
        pytest.param({"crit": ["b64"], "b64": False}, id="b64-false-with-crit"),
        pytest.param({"b64": False}, id="b64-false"),
        pytest.param({"b64": True}, id="b64-true"),
    ],
)
def test_extensions_rejected(extra: dict[str, Any]) -> None:
    key = private_key(Alg.ES256)
    header = {"alg": "ES256", "kid": thumbprint(key)} | extra
    token = sign_with_header(header, claims(), key, Alg.ES256)
    with pytest.raises(UnsupportedHeaderError):
        verify(token, keyset_of(jwk_of(Alg.ES256)))


# -- keys named by the token itself (CVE-2018-0114 class; jku/x5u SSRF) ---------------------


@pytest.mark.parametrize(
    ("kid_choice", "error"),
    [
        pytest.param("victim", BadSignatureError, id="victim-kid"),
        pytest.param("attacker", UnknownKidError, id="attacker-kid"),
        pytest.param(None, BadSignatureError, id="no-kid"),
    ],
)
def test_embedded_jwk_header_ignored(kid_choice: str | None, error: type[TokenError]) -> None:
    victim = jwk_of(Alg.ES256)
    attacker = private_key(Alg.ES256, slot=1)
    attacker_jwk = public_jwk(attacker, Alg.ES256)
    header: dict[str, Any] = {"alg": "ES256", "jwk": attacker_jwk}
    if kid_choice is not None:
        header["kid"] = victim["kid"] if kid_choice == "victim" else attacker_jwk["kid"]
    token = sign_with_header(header, claims(), attacker, Alg.ES256)
    with pytest.raises(error):
        verify(token, keyset_of(victim))


@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("same_kid", [True, False], ids=["victim-kid", "attacker-kid"])
def test_jku_and_x5u_never_fetched(member: str, same_kid: bool) -> None:
    victim = jwk_of(Alg.RS256)
    attacker = private_key(Alg.RS256, slot=1)
    kid = victim["kid"] if same_kid else thumbprint(attacker)
    header = {"alg": "RS256", "kid": kid, member: "https://attacker.invalid/keys.json"}
    token = sign_with_header(header, claims(), attacker, Alg.RS256)
    with pytest.raises(BadSignatureError if same_kid else UnknownKidError):
        verify(token, keyset_of(victim))


def test_x5c_header_ignored() -> None:
    victim = jwk_of(Alg.ES256)
    attacker = private_key(Alg.ES256, slot=1)
    header = {"alg": "ES256", "kid": victim["kid"], "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"]}
    with pytest.raises(BadSignatureError):
        verify(sign_with_header(header, claims(), attacker, Alg.ES256), keyset_of(victim))


# -- resource exhaustion --------------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_huge_token_rejected_before_parsing(as_bytes: bool) -> None:
    junk = "eyJ" + "A" * (4 * 1024 * 1024) + ".e30.AAAA"
    started = time.perf_counter()
    with pytest.raises(TokenTooLargeError):
        verify(junk.encode() if as_bytes else junk, keyset_of(jwk_of(Alg.ES256)))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("eyJ" + "A" * 5000 + ".e30.AAAA", id="header-segment"),
        pytest.param("eyJhbGciOiJFUzI1NiJ9.e30." + "A" * 2000, id="signature-segment"),
        pytest.param("." * 20000, id="dots"),
    ],
)
def test_oversized_segments_rejected(token: str) -> None:
    with pytest.raises(TokenTooLargeError):
        verify(token, keyset_of(jwk_of(Alg.ES256)))


# -- signature encoding malleability --------------------------------------------------------


# ES384/ES512 signatures (96, 132 bytes) encode with no spare bits, so they have one spelling.
@pytest.mark.parametrize("alg", [Alg.RS256, Alg.PS256, Alg.ES256, Alg.EdDSA])
def test_non_canonical_base64_signature_rejected(alg: Alg) -> None:
    token = signer_of(alg).sign(claims())
    head, sig = token.rsplit(".", 1)
    rem = len(sig) % 4
    assert rem in (2, 3), "these signature lengths leave unused bits in the last character"
    mask = 0x0F if rem == 2 else 0x03
    value = ALPHABET.index(sig[-1])
    twin = ALPHABET[value | mask] if value | mask != value else ALPHABET[value & ~mask]
    forged = f"{head}.{sig[:-1]}{twin}"
    # A lenient decoder sees the same signature bytes, so the forged spelling would verify.
    import base64

    padded = sig[:-1] + twin + "=" * (-len(sig) % 4)
    assert base64.urlsafe_b64decode(padded) == b64url_decode(sig)
    with pytest.raises(MalformedTokenError):
        verify(forged, keyset_of(jwk_of(alg)))


@pytest.mark.parametrize("alg", [Alg.ES256, Alg.ES384, Alg.ES512])
def test_ecdsa_der_signature_rejected(alg: Alg) -> None:
    key = private_key(alg)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    token = signer_of(alg).sign(claims())
    signing_input = token.rsplit(".", 1)[0].encode()
    hash_alg = {Alg.ES256: hashes.SHA256(), Alg.ES384: hashes.SHA384(), Alg.ES512: hashes.SHA512()}
    der = key.sign(signing_input, ec.ECDSA(hash_alg[alg]))
    with pytest.raises(BadSignatureError):
        verify(with_signature(token, der), keyset_of(jwk_of(alg)))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: b"\x00" + s, id="leading-zero"),
        pytest.param(lambda s: s + b"\x00", id="trailing-zero"),
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s[: len(s) // 2], id="r-only"),
        pytest.param(lambda s: s[len(s) // 2 :] + s[: len(s) // 2], id="s-r-swapped"),
    ],
)
@pytest.mark.parametrize("alg", [Alg.ES256, Alg.EdDSA, Alg.RS256])
def test_signature_of_wrong_shape_rejected(alg: Alg, mangle: Any) -> None:
    token = signer_of(alg).sign(claims())
    sig = b64url_decode(token.rsplit(".", 1)[1])
    with pytest.raises(BadSignatureError):
        verify(with_signature(token, mangle(sig)), keyset_of(jwk_of(alg)))


@pytest.mark.parametrize("alg", [Alg.ES256, Alg.ES384, Alg.ES512])
@pytest.mark.parametrize("which", ["zero", "order"])
def test_ecdsa_psychic_signature_rejected(alg: Alg, which: str) -> None:
    # CVE-2022-21449: r = s = 0 verified any message in Java 15-18. r = s = n is its twin.
    size = {Alg.ES256: 32, Alg.ES384: 48, Alg.ES512: 66}[alg]
    orders = {
        Alg.ES256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
        Alg.ES384: int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
            "581A0DB248B0A77AECEC196ACCC52973",
            16,
        ),
        Alg.ES512: int(
            "01" + "F" * 64 + "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    }
    curve = private_key(alg).curve  # type: ignore[union-attr]
    # Self-check of the constants: n - 1 is a valid scalar, n is not.
    ec.derive_private_key(orders[alg] - 1, curve)
    with pytest.raises(ValueError, match="out of range"):
        ec.derive_private_key(orders[alg], curve)
    n = 0 if which == "zero" else orders[alg]
    token = signer_of(alg).sign(claims())
    psychic = n.to_bytes(size, "big") * 2
    with pytest.raises(BadSignatureError):
        verify(with_signature(token, psychic), keyset_of(jwk_of(alg)))


# -- ambiguous key sets ---------------------------------------------------------------------


def test_duplicate_kid_in_jwks_ignores_both() -> None:
    good = private_key(Alg.ES256, slot=0)
    rogue = private_key(Alg.ES256, slot=1)
    kid = thumbprint(good)
    keyset = keyset_of(public_jwk(good, Alg.ES256), public_jwk(rogue, Alg.ES256, kid=kid))
    for key in (good, rogue):
        token = sign_with_header({"alg": "ES256", "kid": kid}, claims(), key, Alg.ES256)
        with pytest.raises(UnknownKidError):
            verify(token, keyset)


def test_kid_repeated_three_times_stays_ignored() -> None:
    keys = [private_key(Alg.ES256, slot=i) for i in range(3)]
    keyset = keyset_of(*(public_jwk(k, Alg.ES256, kid="k") for k in keys))
    token = sign_with_header({"alg": "ES256", "kid": "k"}, claims(), keys[2], Alg.ES256)
    with pytest.raises(UnknownKidError):
        verify(token, keyset)


def test_token_without_kid_needs_an_unambiguous_key() -> None:
    key = private_key(Alg.ES256)
    token = sign_with_header({"alg": "ES256"}, claims(), key, Alg.ES256)
    assert verify(token, keyset_of(jwk_of(Alg.ES256)))
    with pytest.raises(UnknownKidError):
        verify(token, keyset_of(jwk_of(Alg.ES256), jwk_of(Alg.ES256, slot=1)))


def test_kidless_token_is_not_verified_by_a_revoked_key() -> None:
    """A token without a kid must not fall back to a key that has been revoked."""
    import time

    from keyturn import errors as E
    from keyturn.keys.algorithms import Alg
    from keyturn.keys.generate import generate_private_key
    from keyturn.keys.jwk import public_jwk
    from keyturn.tokens.jws import SigningKey, encode_segment, sign_compact
    from keyturn.tokens.keyset import KeySet
    from keyturn.tokens.verify import verify_token

    key = generate_private_key(Alg.ES256)
    jwk = public_jwk(key, Alg.ES256)
    token = sign_compact(
        encode_segment({"alg": "ES256"}), {"exp": time.time() + 60}, SigningKey(key, Alg.ES256)
    )
    keyset = KeySet.from_jwks({"keys": [jwk]})
    verify_token(token, keyset, algorithms=[Alg.ES256], now=time.time())
    with pytest.raises(E.UnknownKidError):
        verify_token(token, keyset, algorithms=[Alg.ES256], now=time.time(), revoked={jwk["kid"]})


# -- small-order Ed25519 public keys (universal forgery without a private key) ------------

_SMALL_ORDER_ED25519 = (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)


@pytest.mark.parametrize("point", _SMALL_ORDER_ED25519)
@pytest.mark.parametrize("sign_bit", [0, 1])
def test_small_order_ed25519_jwk_refused(point: str, sign_bit: int) -> None:
    raw = bytearray(bytes.fromhex(point))
    raw[31] |= sign_bit << 7
    jwk = {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": b64url_encode(bytes(raw)).decode()}
    keyset = KeySet.from_jwks({"keys": [jwk]})
    assert not keyset.keys and not keyset.anonymous
    assert [s.kid for s in keyset.skipped] == ["k"]


def test_identity_ed25519_key_would_verify_a_forgery() -> None:
    """Why the check exists: OpenSSL accepts the identity point, and (R=identity, S=0) verifies."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    identity = bytes.fromhex(_SMALL_ORDER_ED25519[1])
    forged = identity + bytes(32)
    ed25519.Ed25519PublicKey.from_public_bytes(identity).verify(forged, b"header.payload")
    token = seg({"alg": "EdDSA", "kid": "k"}) + b"." + seg(claims())
    token += b"." + b64url_encode(forged)
    jwk = {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": b64url_encode(identity).decode()}
    with pytest.raises(UnknownKidError):
        verify(token, KeySet.from_jwks({"keys": [jwk]}))


def test_genuine_ed25519_key_still_accepted() -> None:
    token = signer_of(Alg.EdDSA).sign(claims())
    assert verify(token, keyset_of(jwk_of(Alg.EdDSA)))


# -- a malformed kid in the JWKS is not "no kid" --------------------------------------------


@pytest.mark.parametrize("bad_kid", [123, ["k"], {"k": 1}, True])
def test_jwks_entry_with_non_string_kid_is_skipped_not_anonymous(bad_kid: Any) -> None:
    jwk = dict(jwk_of(Alg.ES256), kid=bad_kid)
    keyset = KeySet.from_jwks({"keys": [jwk]})
    assert not keyset.keys and not keyset.anonymous
    token = sign_with_header({"alg": "ES256"}, claims(), private_key(Alg.ES256), Alg.ES256)
    with pytest.raises(UnknownKidError):
        verify(token, keyset)


# -- non-finite or negative leeway / now: every time check would silently pass -------------


@pytest.mark.parametrize("leeway", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_leeway_fails_closed(leeway: float) -> None:
    from keyturn.errors import ConfigError

    expired = {"sub": "admin", "exp": int(time.time()) - 10_000}
    token = signer_of(Alg.ES256).sign(expired)
    with pytest.raises(ConfigError):
        verify_token(
            token,
            keyset_of(jwk_of(Alg.ES256)),
            algorithms=EVERY_ALG,
            now=time.time(),
            leeway=leeway,
        )


@pytest.mark.parametrize("now", [float("nan"), float("inf")])
def test_non_finite_now_fails_closed(now: float) -> None:
    from keyturn.errors import ConfigError

    token = signer_of(Alg.ES256).sign({"sub": "admin", "exp": 1})
    with pytest.raises(ConfigError):
        verify_token(token, keyset_of(jwk_of(Alg.ES256)), algorithms=EVERY_ALG, now=now)


@pytest.mark.parametrize("alg", [Alg.ES256, Alg.ES384, Alg.ES512])
def test_curve_orders_are_right_and_keyturn_signs_low_s(alg: Alg) -> None:
    """n is the group order (n-1 is a valid scalar, n is not), and every signature has s <= n/2."""
    from keyturn.keys.algorithms import CURVES, SPECS
    from keyturn.keys.generate import generate_private_key
    from keyturn.tokens.jws import CURVE_ORDERS, SigningKey

    crv = SPECS[alg].crv
    assert crv is not None
    n, curve = CURVE_ORDERS[crv], CURVES[crv]
    ec.derive_private_key(n - 1, curve)
    with pytest.raises(ValueError):
        ec.derive_private_key(n, curve)
    signer = SigningKey(generate_private_key(alg), alg)
    size = SPECS[alg].coord_size
    for i in range(40):
        sig = signer.sign(b"message %d" % i)
        assert int.from_bytes(sig[size:], "big") <= n // 2


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("a\n", False), ("acme-1", True), ("-a", False), ("a" * 64, False)],
)
def test_tenant_names_are_matched_whole(value: str, ok: bool) -> None:
    from keyturn.errors import InvalidInputError
    from keyturn.ring.model import check_tenant_name

    if ok:
        assert check_tenant_name(value) == value
    else:
        with pytest.raises(InvalidInputError):
            check_tenant_name(value)


def test_nan_durations_and_leeways_are_refused() -> None:
    from keyturn.durations import parse_duration
    from keyturn.errors import ConfigError, InvalidInputError
    from keyturn.verifier import Verifier

    for text in ("nan", "inf", "-inf"):
        with pytest.raises(InvalidInputError):
            parse_duration(text)
    with pytest.raises(ConfigError):
        Verifier(
            jwks_url="https://issuer.example/jwks.json", algorithms=["ES256"], leeway=float("nan")
        )
