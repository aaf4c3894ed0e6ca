"""Cached key material and JWK helpers shared by the key and token tests.

Generating a 2048-bit RSA key per test would dominate the run time, so keys are made once per
(algorithm family, slot) and reused; a different ``slot`` gives an independent key.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyturn.keys.algorithms import SPECS, Alg, PrivateKey
from keyturn.keys.b64 import b64url_encode_str
from keyturn.keys.generate import generate_private_key
from keyturn.keys.jwk import public_jwk, thumbprint
from keyturn.tokens.jws import SigningKey, encode_segment, sign_compact
from keyturn.tokens.keyset import KeySet
from keyturn.tokens.signer import TokenSigner

ALL_ALGS = tuple(Alg)


@functools.cache
def _key(family: str, slot: int) -> PrivateKey:
    return generate_private_key(Alg(family))


def private_key(alg: Alg, slot: int = 0) -> PrivateKey:
    """A cached private key for ``alg``; every RSA algorithm shares the RSA key of a slot."""
    family = Alg.RS256 if SPECS[alg].kty == "RSA" else alg
    return _key(family.value, slot)


def jwk_of(alg: Alg, slot: int = 0) -> dict[str, Any]:
    """The public JWK keyturn publishes for the cached key (``kid`` = thumbprint)."""
    return public_jwk(private_key(alg, slot), alg)


def keyset_of(*jwks: dict[str, Any]) -> KeySet:
    return KeySet.from_jwks({"keys": list(jwks)})


def signer_of(alg: Alg, slot: int = 0) -> TokenSigner:
    key = private_key(alg, slot)
    return TokenSigner(key, alg, thumbprint(key))


def sign_with_header(
    header: dict[str, Any], claims: dict[str, Any], key: PrivateKey, alg: Alg
) -> str:
    """Sign with an arbitrary protected header (extensions, embedded keys, no kid...)."""
    return sign_compact(encode_segment(header), claims, SigningKey(key, alg))


def _int(value: int) -> str:
    return b64url_encode_str(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def private_jwk(key: PrivateKey, *, crt: bool = True) -> dict[str, Any]:
    """A private JWK written from the key's numbers (independent of keyturn's exporter)."""
    if isinstance(key, rsa.RSAPrivateKey):
        nums = key.private_numbers()
        jwk = {
            "kty": "RSA",
            "n": _int(nums.public_numbers.n),
            "e": _int(nums.public_numbers.e),
            "d": _int(nums.d),
        }
        if crt:
            jwk |= {
                "p": _int(nums.p),
                "q": _int(nums.q),
                "dp": _int(nums.dmp1),
                "dq": _int(nums.dmq1),
                "qi": _int(nums.iqmp),
            }
        return jwk
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        nums = key.private_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode_str(nums.public_numbers.x.to_bytes(size, "big")),
            "y": b64url_encode_str(nums.public_numbers.y.to_bytes(size, "big")),
            "d": b64url_encode_str(nums.private_value.to_bytes(size, "big")),
        }
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "d": b64url_encode_str(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())),
        "x": b64url_encode_str(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
    }


@contextlib.contextmanager
def joserfc_eddsa_allowed() -> Iterator[None]:
    """joserfc warns that "EdDSA" is deprecated by RFC 9864; keyturn still serves it."""
    from joserfc.errors import SecurityWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)
        yield
