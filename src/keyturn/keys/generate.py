"""Fresh key generation for each algorithm."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyturn.errors import WeakKeyError
from keyturn.keys.algorithms import (
    ALLOWED_RSA_BITS,
    CURVES,
    DEFAULT_RSA_BITS,
    SPECS,
    Alg,
    PrivateKey,
)


def generate_private_key(alg: Alg, rsa_bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    """Generate a new private key for ``alg`` (RSA: 2048, 3072 or 4096 bits, never less)."""
    spec = SPECS[alg]
    if spec.kty == "RSA":
        if rsa_bits not in ALLOWED_RSA_BITS:
            raise WeakKeyError(f"RSA key size must be one of {ALLOWED_RSA_BITS}, got {rsa_bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if spec.kty == "EC":
        assert spec.crv is not None
        return ec.generate_private_key(CURVES[spec.crv])
    return ed25519.Ed25519PrivateKey.generate()
