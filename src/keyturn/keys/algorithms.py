"""The signing algorithms keyturn supports and the key types each one requires."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyturn.errors import InvalidKeyError, UnsupportedAlgorithmError, WeakKeyError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

MIN_RSA_BITS = 2048
DEFAULT_RSA_BITS = 2048
ALLOWED_RSA_BITS = (2048, 3072, 4096)


class Alg(StrEnum):
    """JWS algorithms (RFC 7518, RFC 8037). Symmetric and ``none`` are deliberately absent."""

    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    PS256 = "PS256"
    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"
    EdDSA = "EdDSA"


@dataclass(frozen=True, slots=True)
class AlgSpec:
    """What an algorithm needs: key type, curve, hash and signature size facts."""

    alg: Alg
    kty: str  # RSA, EC, OKP
    family: str  # rsa-pkcs1, rsa-pss, ecdsa, eddsa
    hash: type[hashes.HashAlgorithm] | None
    crv: str | None = None
    coord_size: int = 0  # EC: bytes per coordinate (and per r/s in the signature)


SPECS: dict[Alg, AlgSpec] = {
    Alg.RS256: AlgSpec(Alg.RS256, "RSA", "rsa-pkcs1", hashes.SHA256),
    Alg.RS384: AlgSpec(Alg.RS384, "RSA", "rsa-pkcs1", hashes.SHA384),
    Alg.RS512: AlgSpec(Alg.RS512, "RSA", "rsa-pkcs1", hashes.SHA512),
    Alg.PS256: AlgSpec(Alg.PS256, "RSA", "rsa-pss", hashes.SHA256),
    Alg.ES256: AlgSpec(Alg.ES256, "EC", "ecdsa", hashes.SHA256, "P-256", 32),
    Alg.ES384: AlgSpec(Alg.ES384, "EC", "ecdsa", hashes.SHA384, "P-384", 48),
    Alg.ES512: AlgSpec(Alg.ES512, "EC", "ecdsa", hashes.SHA512, "P-521", 66),
    Alg.EdDSA: AlgSpec(Alg.EdDSA, "OKP", "eddsa", None, "Ed25519"),
}

CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
CURVE_NAMES: dict[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def parse_alg(value: str) -> Alg:
    """Return the ``Alg`` for ``value`` or raise a clear error naming the supported ones."""
    try:
        return Alg(value)
    except ValueError:
        supported = ", ".join(a.value for a in Alg)
        raise UnsupportedAlgorithmError(
            f"unsupported algorithm {value!r}; supported: {supported}"
        ) from None


def key_kty_crv(key: PrivateKey | PublicKey) -> tuple[str, str | None]:
    """The JWK ``kty`` and ``crv`` of a key object."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RSA", None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        name = CURVE_NAMES.get(key.curve.name)
        if name is None:
            raise UnsupportedAlgorithmError(f"unsupported elliptic curve {key.curve.name}")
        return "EC", name
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "OKP", "Ed25519"
    raise UnsupportedAlgorithmError(f"unsupported key type {type(key).__name__}")


def algs_for_key(key: PrivateKey | PublicKey) -> tuple[Alg, ...]:
    """Every algorithm this key may be used with (RSA: all RSA algorithms; EC: its curve's)."""
    kty, crv = key_kty_crv(key)
    return tuple(a for a, s in SPECS.items() if s.kty == kty and s.crv == crv)


def default_alg_for_key(key: PrivateKey | PublicKey) -> Alg:
    """The conventional algorithm for a key: RS256 for RSA, the curve's ES* or EdDSA."""
    return algs_for_key(key)[0]


def check_key_for_alg(key: PrivateKey | PublicKey, alg: Alg) -> None:
    """Refuse a key that cannot serve ``alg`` or is too weak for it."""
    spec = SPECS[alg]
    kty, crv = key_kty_crv(key)
    if kty != spec.kty or crv != spec.crv:
        have = f"{kty}" + (f" {crv}" if crv else "")
        need = f"{spec.kty}" + (f" {spec.crv}" if spec.crv else "")
        # A mismatch is not weakness: InvalidKeyError (key_invalid), not WeakKeyError.
        raise InvalidKeyError(f"{alg} needs a {need} key, got {have}")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise WeakKeyError(f"RSA key of {key.key_size} bits refused: at least {MIN_RSA_BITS}")
