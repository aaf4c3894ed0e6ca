"""Import existing private keys: PEM (PKCS#1, PKCS#8, SEC1; optionally encrypted), PKCS#12, JWK."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Literal

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key, pkcs12
from cryptography.x509 import Certificate

from keyturn.errors import InvalidKeyError, UnsupportedAlgorithmError
from keyturn.keys.algorithms import (
    Alg,
    PrivateKey,
    check_key_for_alg,
    default_alg_for_key,
    parse_alg,
)
from keyturn.keys.b64 import b64url_encode_str
from keyturn.keys.jwk import private_key_from_jwk, public_params

MAX_IMPORT_BYTES = 256 * 1024
ImportFormat = Literal["pem", "pkcs12", "jwk"]


@dataclass(frozen=True)
class ImportedKey:
    """A validated private key with the certificate chain it came with, if any."""

    private_key: PrivateKey
    alg: Alg
    x5c: list[str] = field(default_factory=list)
    x5t_s256: str | None = None


def detect_format(data: bytes) -> ImportFormat:
    """Guess the format from the bytes: PEM armour, a JSON object, or DER (PKCS#12)."""
    head = data.lstrip()[:64]
    if head.startswith(b"-----BEGIN"):
        return "pem"
    if head.startswith(b"{"):
        return "jwk"
    return "pkcs12"


def _check_private(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise InvalidKeyError(f"unsupported private key type {type(key).__name__}")


def import_key(
    data: bytes,
    *,
    fmt: ImportFormat | None = None,
    password: bytes | None = None,
    alg: Alg | None = None,
) -> ImportedKey:
    """Parse and validate a private key; refuse public-only, weak or mismatched keys."""
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidKeyError(f"key file too large ({len(data)} bytes, limit {MAX_IMPORT_BYTES})")
    fmt = fmt or detect_format(data)
    x5c: list[str] = []
    x5t: str | None = None
    if fmt == "pem":
        key = _load_pem(data, password)
    elif fmt == "jwk":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidKeyError(f"JWK is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise InvalidKeyError("JWK must be a JSON object")
        key = private_key_from_jwk(obj)
        if alg is None and isinstance(obj.get("alg"), str):
            alg = parse_alg(obj["alg"])
    elif fmt == "pkcs12":
        key, x5c, x5t = _load_pkcs12(data, password)
    else:  # pragma: no cover - Literal exhausted
        raise InvalidKeyError(f"unknown format {fmt!r}")
    chosen = alg or default_alg_for_key(key)
    check_key_for_alg(key, chosen)
    return ImportedKey(key, chosen, x5c, x5t)


def _load_pem(data: bytes, password: bytes | None) -> PrivateKey:
    if b"PRIVATE KEY" not in data:
        if b"PUBLIC KEY" in data or b"CERTIFICATE" in data:
            raise InvalidKeyError("the PEM holds only a public key: a private key is required")
        raise InvalidKeyError("no PEM private key found")
    try:
        key = load_pem_private_key(data, password=password or None)
    except TypeError as exc:
        # cryptography raises TypeError both for "password needed" and "password given but
        # the key is not encrypted"; say which.
        if password:
            raise InvalidKeyError("the PEM key is not encrypted: omit the passphrase") from None
        raise InvalidKeyError(
            f"the PEM key is encrypted: a passphrase is required ({exc})"
        ) from None
    except ValueError:
        if password:
            raise InvalidKeyError("wrong passphrase, or malformed PEM key") from None
        raise InvalidKeyError("malformed PEM private key") from None
    except UnsupportedAlgorithm as exc:  # e.g. a key type or PEM cipher OpenSSL lacks
        raise InvalidKeyError(f"unsupported PEM private key: {exc}") from None
    return _check_private(key)


def _load_pkcs12(data: bytes, password: bytes | None) -> tuple[PrivateKey, list[str], str | None]:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise InvalidKeyError("could not open PKCS#12: wrong password or malformed file") from None
    except UnsupportedAlgorithm as exc:  # e.g. legacy RC2 encryption without OpenSSL legacy
        raise InvalidKeyError(f"unsupported PKCS#12 file: {exc}") from None
    if key is None:
        raise InvalidKeyError("the PKCS#12 file holds no private key")
    priv = _check_private(key)
    chain: list[Certificate] = ([cert] if cert is not None else []) + list(extra or [])
    if not chain:
        return priv, [], None
    # RFC 7517 section 4.7: the key in the first x5c certificate MUST match the JWK's key. A
    # file whose certificates are all "other" (no leaf bound to the key) would otherwise
    # publish an unrelated certificate first, so the first one is checked whatever its role.
    leaf = chain[0]
    if not _same_public_key(leaf, priv):
        raise InvalidKeyError("the PKCS#12 certificate does not match its private key")
    x5c = [base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in chain]
    # x5t#S256 is the SHA-256 of the leaf certificate's DER (RFC 7517 section 4.9).
    x5t = b64url_encode_str(hashlib.sha256(leaf.public_bytes(Encoding.DER)).digest())
    return priv, x5c, x5t


def _same_public_key(cert: Certificate, key: PrivateKey) -> bool:
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return False
    try:
        return public_params(pub) == public_params(key)
    except UnsupportedAlgorithmError:  # e.g. a certificate on a curve keyturn does not use
        return False
