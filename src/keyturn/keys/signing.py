"""The private-key side of JWS: a signature in exactly the bytes RFC 7518 wants.

Shared by every key backend, so a token signed by a key in a PKCS#11 token and one signed by a
sealed software key are indistinguishable: RSA PKCS#1 v1.5, RSA-PSS with MGF1 over the same
hash and a salt as long as the hash, ECDSA as fixed-width ``r || s`` in low-S form, Ed25519 as
is.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keyturn.errors import InvalidKeyError
from keyturn.keys.algorithms import SPECS, Alg, AlgSpec, PrivateKey, check_key_for_alg

# Group orders n of the NIST curves (FIPS 186-4 D.1.2), for low-S ECDSA signatures.
CURVE_ORDERS = {
    "P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P-384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "P-521": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def pss_padding(spec: AlgSpec) -> padding.PSS:
    assert spec.hash is not None
    h = spec.hash()
    # RFC 7518 section 3.5: the salt is as long as the hash output.
    return padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)


class SigningKey:
    """A private key prepared for one algorithm: padding and hash objects built once."""

    __slots__ = ("_fn", "alg", "key")

    def __init__(self, key: PrivateKey, alg: Alg) -> None:
        check_key_for_alg(key, alg)
        self.key = key
        self.alg = alg
        spec = SPECS[alg]
        if isinstance(key, rsa.RSAPrivateKey):
            assert spec.hash is not None
            pad: padding.AsymmetricPadding = (
                pss_padding(spec) if spec.family == "rsa-pss" else padding.PKCS1v15()
            )
            h = spec.hash()
            sign_rsa = key.sign

            def fn(data: bytes) -> bytes:
                return sign_rsa(data, pad, h)

        elif isinstance(key, ec.EllipticCurvePrivateKey):
            assert spec.hash is not None
            sig_alg = ec.ECDSA(spec.hash())
            size = spec.coord_size
            sign_ec = key.sign
            order = CURVE_ORDERS[spec.crv or ""]
            half = order // 2

            def fn(data: bytes) -> bytes:
                r, s = decode_dss_signature(sign_ec(data, sig_alg))
                # Low-S form: (r, s) and (r, n - s) both verify; emitting one of them makes
                # keyturn's own tokens canonical (verifiers still accept either, as they must).
                if s > half:
                    s = order - s
                return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        else:
            assert isinstance(key, ed25519.Ed25519PrivateKey)
            fn = key.sign
        self._fn = fn

    def sign(self, data: bytes) -> bytes:
        return self._fn(data)


def low_s_raw(signature: bytes, crv: str) -> bytes:
    """A raw ``r || s`` ECDSA signature (what PKCS#11 ``CKM_ECDSA`` returns) in low-S form.

    The token's bytes are already the JWS encoding (fixed-width big-endian r then s); only the
    canonical choice between s and n - s is made here, as the software path makes it.
    """
    order = CURVE_ORDERS[crv]
    if len(signature) % 2:
        raise InvalidKeyError("an ECDSA signature from the key backend has an odd length")
    size = len(signature) // 2
    s = int.from_bytes(signature[size:], "big")
    if s > order // 2:
        return signature[:size] + (order - s).to_bytes(size, "big")
    return signature
