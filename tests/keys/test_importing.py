"""Importing private keys from every supported format, and refusing everything unsafe."""

from __future__ import annotations

import base64
import datetime
import hashlib
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    pkcs12,
)
from cryptography.x509.oid import NameOID
from joserfc import jwk as joserfc_jwk

from keyturn.errors import InvalidKeyError, UnsupportedAlgorithmError, WeakKeyError
from keyturn.keys.algorithms import Alg, PrivateKey
from keyturn.keys.b64 import b64url_encode_str
from keyturn.keys.importing import MAX_IMPORT_BYTES, detect_format, import_key
from keyturn.keys.jwk import public_jwk, thumbprint
from tests.keys.material import ALL_ALGS, jwk_of, private_jwk, private_key

PASSWORD = b"correct horse battery staple"


def pem(key: PrivateKey, fmt: PrivateFormat, password: bytes | None = None) -> bytes:
    enc = BestAvailableEncryption(password) if password else NoEncryption()
    return key.private_bytes(Encoding.PEM, fmt, enc)


def self_signed(key: PrivateKey, cn: str = "keyturn test") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    # Ed25519 certificates are signed without a separate hash algorithm.
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, algorithm)
    )


def p12(
    key: PrivateKey,
    cert: x509.Certificate | None,
    cas: list[x509.Certificate] | None = None,
    password: bytes | None = PASSWORD,
) -> bytes:
    enc = BestAvailableEncryption(password) if password else NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"keyturn", key, cert, cas, enc)


def joserfc_thumbprint(key_pem: bytes, kty: str) -> str:
    """An independent RFC 7638 thumbprint: joserfc parses the PEM and hashes its own JWK."""
    imported = joserfc_jwk.import_key(key_pem, kty)  # type: ignore[call-overload]
    return str(imported.thumbprint())


ALG_IDS = [pytest.param(a, id=a.value) for a in ALL_ALGS]
PEM_CASES = [
    pytest.param(alg, fmt, password, id=f"{alg.value}-{label}-{'enc' if password else 'plain'}")
    for alg in ALL_ALGS
    for fmt, label in (
        (PrivateFormat.TraditionalOpenSSL, "pkcs1" if alg.value[0] in "RP" else "sec1"),
        (PrivateFormat.PKCS8, "pkcs8"),
    )
    for password in (None, PASSWORD)
    # Ed25519 has no "traditional" PEM form, only PKCS#8.
    if not (alg is Alg.EdDSA and fmt is PrivateFormat.TraditionalOpenSSL)
]


@pytest.mark.parametrize(("alg", "fmt", "password"), PEM_CASES)
def test_pem_round_trip(alg: Alg, fmt: PrivateFormat, password: bytes | None) -> None:
    key = private_key(alg)
    data = pem(key, fmt, password)
    assert detect_format(data) == "pem"
    imported = import_key(data, password=password, alg=alg)
    assert imported.alg is alg
    assert imported.x5c == []
    assert imported.x5t_s256 is None
    assert thumbprint(imported.private_key) == thumbprint(key)
    kty = public_jwk(key, alg)["kty"]
    assert thumbprint(imported.private_key) == joserfc_thumbprint(pem(key, fmt), kty)


@pytest.mark.parametrize(
    ("alg", "default"),
    [
        pytest.param(Alg.PS256, Alg.RS256, id="rsa"),
        pytest.param(Alg.ES256, Alg.ES256, id="p256"),
        pytest.param(Alg.ES384, Alg.ES384, id="p384"),
        pytest.param(Alg.ES512, Alg.ES512, id="p521"),
        pytest.param(Alg.EdDSA, Alg.EdDSA, id="ed25519"),
    ],
)
def test_default_alg_follows_the_key(alg: Alg, default: Alg) -> None:
    assert import_key(pem(private_key(alg), PrivateFormat.PKCS8)).alg is default


@pytest.mark.parametrize("alg", ALG_IDS)
def test_pkcs12_round_trip_with_certificate(alg: Alg) -> None:
    key = private_key(alg)
    cert = self_signed(key)
    data = p12(key, cert)
    assert detect_format(data) == "pkcs12"
    imported = import_key(data, password=PASSWORD, alg=alg)
    assert thumbprint(imported.private_key) == thumbprint(key)
    der = cert.public_bytes(Encoding.DER)
    # x5c is standard base64 (with padding, '+' and '/'), not base64url (RFC 7517 4.7).
    assert imported.x5c == [base64.b64encode(der).decode("ascii")]
    assert base64.b64decode(imported.x5c[0], validate=True) == der
    # x5t#S256 is base64url of the SHA-256 of the DER (RFC 7517 4.9).
    assert imported.x5t_s256 == b64url_encode_str(hashlib.sha256(der).digest())
    jwk = public_jwk(imported.private_key, alg, x5c=imported.x5c, x5t_s256=imported.x5t_s256)
    assert jwk["x5c"] == imported.x5c
    assert jwk["x5t#S256"] == imported.x5t_s256


def test_pkcs12_chain_keeps_leaf_first() -> None:
    key = private_key(Alg.ES256)
    ca_key = private_key(Alg.ES256, slot=1)
    leaf, ca = self_signed(key, "leaf"), self_signed(ca_key, "ca")
    imported = import_key(p12(key, leaf, [ca]), password=PASSWORD)
    assert [base64.b64decode(c) for c in imported.x5c] == [
        leaf.public_bytes(Encoding.DER),
        ca.public_bytes(Encoding.DER),
    ]


def test_pkcs12_without_certificate() -> None:
    key = private_key(Alg.ES256)
    imported = import_key(p12(key, None), password=PASSWORD)
    assert imported.x5c == []
    assert imported.x5t_s256 is None


def test_pkcs12_without_password() -> None:
    key = private_key(Alg.EdDSA)
    imported = import_key(p12(key, self_signed(key), password=None))
    assert thumbprint(imported.private_key) == thumbprint(key)


def test_pkcs12_certificate_not_matching_key_refused() -> None:
    # cryptography refuses to write a mismatched leaf, but a file whose only certificate sits
    # in the "other certificates" bag is common; it must not become x5c[0] for this key.
    key = private_key(Alg.ES256)
    stranger = self_signed(private_key(Alg.ES256, slot=1))
    with pytest.raises(InvalidKeyError, match="does not match"):
        import_key(p12(key, None, [stranger]), password=PASSWORD)


@pytest.mark.parametrize(
    "password",
    [pytest.param(b"wrong", id="wrong"), pytest.param(None, id="missing")],
)
def test_pkcs12_wrong_password(password: bytes | None) -> None:
    data = p12(private_key(Alg.ES256), None)
    with pytest.raises(InvalidKeyError, match="wrong password"):
        import_key(data, password=password)


@pytest.mark.parametrize("alg", ALG_IDS)
def test_private_jwk_round_trip(alg: Alg) -> None:
    key = private_key(alg)
    jwk = private_jwk(key) | {"alg": alg.value}
    data = orjson.dumps(jwk)
    assert detect_format(b"  \n" + data) == "jwk"
    imported = import_key(data)
    assert imported.alg is alg  # taken from the JWK's own "alg"
    assert thumbprint(imported.private_key) == thumbprint(key)
    joserfc_key = joserfc_jwk.import_key(jwk)  # type: ignore[call-overload]
    assert thumbprint(imported.private_key) == joserfc_key.thumbprint()


def test_private_jwk_alg_that_does_not_fit_the_key() -> None:
    jwk = private_jwk(private_key(Alg.ES256)) | {"alg": "ES384"}
    with pytest.raises(InvalidKeyError):
        import_key(orjson.dumps(jwk))


def test_private_jwk_symmetric_alg_refused() -> None:
    jwk = private_jwk(private_key(Alg.ES256)) | {"alg": "HS256"}
    with pytest.raises(UnsupportedAlgorithmError):
        import_key(orjson.dumps(jwk))


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param(PrivateFormat.TraditionalOpenSSL, id="pkcs1"),
        pytest.param(PrivateFormat.PKCS8, id="pkcs8"),
    ],
)
def test_rsa_1024_refused(fmt: PrivateFormat) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    with pytest.raises(WeakKeyError, match="1024"):
        import_key(pem(weak, fmt))
    with pytest.raises(WeakKeyError):
        import_key(orjson.dumps(private_jwk(weak)))


@pytest.mark.parametrize(
    ("key_alg", "wanted"),
    [
        pytest.param(Alg.ES384, Alg.ES256, id="p384-for-es256"),
        pytest.param(Alg.ES256, Alg.ES512, id="p256-for-es512"),
        pytest.param(Alg.RS256, Alg.ES256, id="rsa-for-es256"),
        pytest.param(Alg.EdDSA, Alg.RS256, id="ed25519-for-rs256"),
        pytest.param(Alg.ES256, Alg.EdDSA, id="p256-for-eddsa"),
    ],
)
def test_key_that_does_not_fit_the_alg_refused(key_alg: Alg, wanted: Alg) -> None:
    with pytest.raises(InvalidKeyError, match="needs"):
        import_key(pem(private_key(key_alg), PrivateFormat.PKCS8), alg=wanted)


def test_unsupported_curve_refused() -> None:
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises((InvalidKeyError, UnsupportedAlgorithmError)):
        import_key(pem(k1, PrivateFormat.PKCS8))


def test_encrypted_pem_errors() -> None:
    key = private_key(Alg.ES256)
    encrypted = pem(key, PrivateFormat.PKCS8, PASSWORD)
    with pytest.raises(InvalidKeyError, match="wrong passphrase"):
        import_key(encrypted, password=b"wrong")
    with pytest.raises(InvalidKeyError, match="passphrase is required"):
        import_key(encrypted)
    with pytest.raises(InvalidKeyError, match="not encrypted"):
        import_key(pem(key, PrivateFormat.PKCS8), password=PASSWORD)


@pytest.mark.parametrize("alg", [pytest.param(a, id=a.value) for a in (Alg.RS256, Alg.EdDSA)])
def test_public_only_pem_refused(alg: Alg) -> None:
    pub = (
        private_key(alg).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidKeyError, match="public key"):
        import_key(pub)


def test_certificate_only_pem_refused() -> None:
    cert = self_signed(private_key(Alg.ES256)).public_bytes(Encoding.PEM)
    with pytest.raises(InvalidKeyError, match="public key"):
        import_key(cert)


@pytest.mark.parametrize("alg", ALG_IDS)
def test_public_only_jwk_refused(alg: Alg) -> None:
    with pytest.raises(InvalidKeyError, match="public-only"):
        import_key(orjson.dumps(jwk_of(alg)))


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
            None,
            id="pem-garbage",
        ),
        pytest.param(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n", None, id="pem-no-key"),
        pytest.param(b"\x30\x82\x01\x00garbage", None, id="der-garbage"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"{not json", None, id="jwk-bad-json"),
        pytest.param(b"[1, 2]", "jwk", id="jwk-not-object"),
        pytest.param(b'{"kty": "RSA", "d": 5}', None, id="jwk-bad-member"),
        pytest.param(b"\xff\xfe{}", "jwk", id="jwk-not-utf8"),
    ],
)
def test_malformed_input_refused(data: bytes, fmt: Any) -> None:
    with pytest.raises(InvalidKeyError):
        import_key(data, fmt=fmt)


@pytest.mark.parametrize(
    "head", [pytest.param(b"-----BEGIN", id="pem"), pytest.param(b"{", id="jwk")]
)
def test_oversize_input_refused(head: bytes) -> None:
    with pytest.raises(InvalidKeyError, match="too large"):
        import_key(head + b"A" * MAX_IMPORT_BYTES)


def test_kid_is_the_thumbprint_everywhere() -> None:
    key = private_key(Alg.RS256)
    imported = import_key(pem(key, PrivateFormat.TraditionalOpenSSL))
    kid = public_jwk(imported.private_key, imported.alg)["kid"]
    assert kid == thumbprint(key) == joserfc_thumbprint(pem(key, PrivateFormat.PKCS8), "RSA")
