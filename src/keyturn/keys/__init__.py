"""Key material: algorithms, generation, import, RFC 7638 kid, JWK export and sealing at rest."""

from keyturn.keys.algorithms import Alg, PrivateKey, PublicKey, parse_alg
from keyturn.keys.generate import generate_private_key
from keyturn.keys.jwk import public_jwk, public_key_from_jwk, thumbprint

__all__ = [
    "Alg",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "parse_alg",
    "public_jwk",
    "public_key_from_jwk",
    "thumbprint",
]
