"""JWK conversion (RFC 7517/7518/8037) and the RFC 7638 thumbprint that keyturn uses as ``kid``."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyturn.errors import InvalidKeyError, UnsupportedAlgorithmError
from keyturn.keys.algorithms import CURVES, Alg, PrivateKey, PublicKey, key_kty_crv
from keyturn.keys.b64 import b64url_decode, b64url_encode_str

# Members that only a private JWK carries: never emitted by public_jwk.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

# Ed25519 public keys of small order (libsodium's blocklist; compared with the sign bit
# cleared). OpenSSL accepts them, and with one a signature (R = a small-order point, S = 0)
# verifies for a large share of all messages, with no private key: universal forgery.
_ED25519_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p-1, order 2
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p (= 0)
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p+1 (= 1)
    )
)


def _is_small_order_ed25519(raw: bytes) -> bool:
    return len(raw) == 32 and raw[:31] + bytes([raw[31] & 0x7F]) in _ED25519_SMALL_ORDER


def _int_to_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode_str(value.to_bytes(size, "big"))


def _b64_to_int(value: object, name: str) -> int:
    if not isinstance(value, str) or not value:
        raise InvalidKeyError(f"JWK member {name!r} must be a non-empty base64url string")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except ValueError as exc:
        raise InvalidKeyError(f"JWK member {name!r}: {exc}") from None


def public_params(key: PrivateKey | PublicKey) -> dict[str, str]:
    """The required public members of a key's JWK (the RFC 7638 thumbprint input)."""
    pub = _public_of(key)
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        return {"e": _int_to_b64(nums.e), "kty": "RSA", "n": _int_to_b64(nums.n)}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        _, crv = key_kty_crv(pub)
        assert crv is not None
        size = (pub.curve.key_size + 7) // 8
        enc = pub.public_numbers()
        return {
            "crv": crv,
            "kty": "EC",
            "x": _int_to_b64(enc.x, size),
            "y": _int_to_b64(enc.y, size),
        }
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode_str(raw)}
    raise UnsupportedAlgorithmError(f"unsupported key type {type(pub).__name__}")


def _public_of(key: PrivateKey | PublicKey) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return key
    return key.public_key()


def thumbprint_of_params(params: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""
    canonical = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    return b64url_encode_str(hashlib.sha256(canonical).digest())


def thumbprint(key: PrivateKey | PublicKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of a key: keyturn's ``kid``, so one kid is one key."""
    return thumbprint_of_params(public_params(key))


def public_jwk(
    key: PrivateKey | PublicKey,
    alg: Alg,
    kid: str | None = None,
    x5c: list[str] | None = None,
    x5t_s256: str | None = None,
) -> dict[str, Any]:
    """The public JWK to publish: ``kty``, ``kid``, ``use``, ``alg`` and public parameters only."""
    params = public_params(key)
    jwk: dict[str, Any] = {
        "kty": params["kty"],
        "kid": kid or thumbprint_of_params(params),
        "use": "sig",
        "alg": alg.value,
    }
    jwk.update({k: v for k, v in params.items() if k != "kty"})
    if x5c:
        jwk["x5c"] = list(x5c)
    if x5t_s256:
        jwk["x5t#S256"] = x5t_s256
    assert not PRIVATE_MEMBERS & jwk.keys()
    return jwk


def public_key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    """Build a public key from a JWK's public members (private members are ignored)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        n = _b64_to_int(jwk.get("n"), "n")
        e = _b64_to_int(jwk.get("e"), "e")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise InvalidKeyError(f"invalid RSA JWK: {exc}") from None
    if kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in CURVES:
            raise InvalidKeyError(f"unsupported EC curve {crv!r}")
        x = _b64_to_int(jwk.get("x"), "x")
        y = _b64_to_int(jwk.get("y"), "y")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, CURVES[crv]).public_key()
        except ValueError as exc:
            raise InvalidKeyError(f"invalid EC JWK: {exc}") from None
    if kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise InvalidKeyError(f"unsupported OKP curve {jwk.get('crv')!r}")
        x_raw = jwk.get("x")
        if not isinstance(x_raw, str):
            raise InvalidKeyError("OKP JWK needs member 'x'")
        try:
            raw = b64url_decode(x_raw)
            if _is_small_order_ed25519(raw):
                raise InvalidKeyError("invalid Ed25519 JWK: a small-order point, not a public key")
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise InvalidKeyError(f"invalid Ed25519 JWK: {exc}") from None
    raise InvalidKeyError(f"unsupported JWK key type {kty!r}")


def private_key_from_jwk(jwk: dict[str, Any]) -> PrivateKey:
    """Build a private key from a private JWK; a public-only JWK is refused."""
    kty = jwk.get("kty")
    if "d" not in jwk:
        raise InvalidKeyError("the JWK is public-only: a private key (member 'd') is required")
    try:
        if kty == "RSA":
            n = _b64_to_int(jwk.get("n"), "n")
            e = _b64_to_int(jwk.get("e"), "e")
            d = _b64_to_int(jwk.get("d"), "d")
            if all(m in jwk for m in ("p", "q", "dp", "dq", "qi")):
                p = _b64_to_int(jwk["p"], "p")
                q = _b64_to_int(jwk["q"], "q")
                dp = _b64_to_int(jwk["dp"], "dp")
                dq = _b64_to_int(jwk["dq"], "dq")
                qi = _b64_to_int(jwk["qi"], "qi")
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
                dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
            pub = rsa.RSAPublicNumbers(e, n)
            return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, pub).private_key()
        if kty == "EC":
            crv = jwk.get("crv")
            if not isinstance(crv, str) or crv not in CURVES:
                raise InvalidKeyError(f"unsupported EC curve {crv!r}")
            d = _b64_to_int(jwk.get("d"), "d")
            priv = ec.derive_private_key(d, CURVES[crv])
            # The public members must describe the same key, or the JWK is corrupt.
            if "x" in jwk or "y" in jwk:
                want = public_params(priv)
                if jwk.get("x") != want["x"] or jwk.get("y") != want["y"]:
                    raise InvalidKeyError("EC JWK: public members do not match the private key")
            return priv
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise InvalidKeyError(f"unsupported OKP curve {jwk.get('crv')!r}")
            d_raw = jwk.get("d")
            if not isinstance(d_raw, str):
                raise InvalidKeyError("OKP JWK member 'd' must be a string")
            okp = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(d_raw))
            if "x" in jwk and jwk["x"] != public_params(okp)["x"]:
                raise InvalidKeyError("OKP JWK: 'x' does not match the private key")
            return okp
    except InvalidKeyError:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"invalid {kty} JWK: {exc}") from None
    raise InvalidKeyError(f"unsupported JWK key type {kty!r}")
