"""In-process signing and verification: keyturn against raw cryptography, PyJWT and joserfc.

Every implementation gets prepared key objects (built once, outside the timed loop) and the
same 8 claims plus ``kid``. Verification checks, for every implementation alike: the
signature, a one-algorithm allow-list, exp/nbf, iss and aud.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench._common import Mode, Row, interleaved, rate, say, with_ratios

ALGS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
ISSUER = "https://keyturn.example.com/t/acme"
AUDIENCE = "https://api.example.com/orders"


def claims(now: int) -> dict[str, Any]:
    """Eight typical claims, about 250 bytes of JSON."""
    return {
        "iss": ISSUER,
        "sub": "user-8d2f1c9a-4b7e-4f0e-9a61-3c2b5d7e9f10",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "b5Zq1n0Yw8Hn3kQm2rT9xA",
        "scope": "orders:read orders:write",
    }


@dataclass
class Fixture:
    """One algorithm's keys, prepared in every library's form, and a token signed by keyturn."""

    alg: str
    private: Any
    public: Any
    kid: str
    token: str
    signing_input: bytes
    raw_signature: bytes  # the token's signature in cryptography's form (DER for ECDSA)
    raw_sign: Callable[[bytes], bytes]
    raw_verify: Callable[[bytes, bytes], None]


def _generate(alg: str) -> Any:
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    return ed25519.Ed25519PrivateKey.generate()


def _raw(alg: str, priv: Any) -> tuple[Callable[[bytes], bytes], Callable[[bytes, bytes], None]]:
    """The bare primitive with prepared padding/hash objects: the baseline."""
    pub = priv.public_key()
    if alg == "RS256":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        h: hashes.HashAlgorithm = hashes.SHA256()
    elif alg == "PS256":
        h = hashes.SHA256()
        pad = padding.PSS(mgf=padding.MGF1(h), salt_length=32)
    elif alg in ("ES256", "ES384"):
        sig_alg = ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384())
        esign, everify = priv.sign, pub.verify

        def sign_ec(m: bytes) -> bytes:
            return esign(m, sig_alg)

        def verify_ec(s: bytes, m: bytes) -> None:
            everify(s, m, sig_alg)

        return sign_ec, verify_ec
    else:
        return priv.sign, pub.verify
    rsign, rverify = priv.sign, pub.verify

    def sign_rsa(m: bytes) -> bytes:
        return rsign(m, pad, h)

    def verify_rsa(s: bytes, m: bytes) -> None:
        rverify(s, m, pad, h)

    return sign_rsa, verify_rsa


def fixture(alg: str, now: int) -> Fixture:
    from keyturn.keys import Alg, thumbprint
    from keyturn.keys.b64 import b64url_decode
    from keyturn.tokens import TokenSigner

    priv = _generate(alg)
    kid = thumbprint(priv)
    token = TokenSigner(priv, Alg(alg), kid).sign(claims(now))
    signing_input, _, sig_seg = token.encode().rpartition(b".")
    sig = b64url_decode(sig_seg)
    if alg.startswith("ES"):
        size = len(sig) // 2
        sig = encode_dss_signature(
            int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        )
    raw_sign, raw_verify = _raw(alg, priv)
    raw_verify(sig, signing_input)  # the baseline must verify what the others verify
    return Fixture(
        alg, priv, priv.public_key(), kid, token, signing_input, sig, raw_sign, raw_verify
    )


# --- implementations: each returns a zero-argument callable doing one operation -------------
def sign_impls(fx: Fixture, now: int) -> list[tuple[str, Callable[[], object]]]:
    import jwt as pyjwt
    from joserfc import jwt as jjwt

    from keyturn.keys import Alg
    from keyturn.tokens import TokenSigner

    c = claims(now)
    msg = fx.signing_input
    raw = fx.raw_sign
    signer = TokenSigner(fx.private, Alg(fx.alg), fx.kid)
    jkey = _joserfc_key(fx.private)
    jheader = {"alg": fx.alg, "kid": fx.kid, "typ": "JWT"}
    jalgs = [fx.alg]
    pheaders = {"kid": fx.kid}
    priv, alg = fx.private, fx.alg
    return [
        ("raw cryptography", lambda: raw(msg)),
        ("keyturn TokenSigner", lambda: signer.sign(c)),
        ("PyJWT", lambda: pyjwt.encode(c, priv, algorithm=alg, headers=pheaders)),
        ("joserfc", lambda: jjwt.encode(jheader, c, jkey, algorithms=jalgs)),
    ]


def _joserfc_key(key: Any) -> Any:
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return RSAKey.import_key(key)
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return ECKey.import_key(key)
    return OKPKey.import_key(key)


def minimal_verify(fx: Fixture) -> Callable[[], object]:
    """The floor of a Python verify: the least work per token, none of the hardening. A yardstick.

    Split, decode the signature and the payload, one signature check, parse the claims,
    compare ``exp``/``nbf``/``iss``/``aud``; the header is compared with the one known header
    (what keyturn's header cache amounts to). It is faster than ``../shared/MEASURED.md``'s
    "minimal compact JWS" (which parses the header per token and uses a slower decode), and it
    must never verify real tokens: no size caps, lenient base64 (``+``/``/`` and non-canonical
    bits accepted), no key lookup or revocation, no type checks on the claims. The gap between
    this row and keyturn's is what keyturn's checks cost per token.
    """
    import orjson
    import pybase64

    decode = pybase64.b64decode
    loads = orjson.loads
    raw, token, clock = fx.raw_verify, fx.token, time.time
    header = token.encode().partition(b".")[0]
    pad = (b"", b"", b"==", b"=")
    size = {"ES256": 32, "ES384": 48}.get(fx.alg)

    def verify() -> object:
        signing_input, _, s = token.encode().rpartition(b".")
        h, _, p = signing_input.partition(b".")
        if h != header:
            raise ValueError("unknown header")
        sig = decode(s + pad[len(s) & 3], b"-_", True)
        if size is not None:  # JWS r||s to the DER cryptography takes
            sig = encode_dss_signature(
                int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            )
        raw(sig, signing_input)
        c = loads(decode(p + pad[len(p) & 3], b"-_", True))
        now = clock()
        if not c["exp"] > now - 60 or c["nbf"] > now + 60:
            raise ValueError("time")
        if c["iss"] != ISSUER or c["aud"] != AUDIENCE:
            raise ValueError("iss/aud")
        return c

    return verify


def verify_impls(fx: Fixture) -> list[tuple[str, Callable[[], object]]]:
    import jwt as pyjwt
    from joserfc import jwt as jjwt
    from joserfc.jwt import JWTClaimsRegistry

    from keyturn.keys import Alg, public_jwk
    from keyturn.tokens import KeySet, verify_token

    token, msg, sig, raw = fx.token, fx.signing_input, fx.raw_signature, fx.raw_verify
    alg = fx.alg
    keyset = KeySet.from_jwks({"keys": [public_jwk(fx.public, Alg(alg), fx.kid)]})
    allowed = frozenset({Alg(alg)})
    clock = time.time

    def keyturn_verify() -> object:
        return verify_token(
            token, keyset, algorithms=allowed, now=clock(), issuer=ISSUER, audience=AUDIENCE
        )

    pub, palgs = fx.public, [alg]
    popts = {"require": ["exp", "iss", "aud"]}

    def pyjwt_verify() -> object:
        return pyjwt.decode(
            token, pub, algorithms=palgs, issuer=ISSUER, audience=AUDIENCE, options=popts
        )

    jkey = _joserfc_key(fx.public)
    registry = JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )

    def joserfc_verify() -> object:
        tok = jjwt.decode(token, jkey, algorithms=palgs)
        registry.validate(tok.claims)
        return tok

    impls: list[tuple[str, Callable[[], object]]] = [
        ("raw cryptography", lambda: raw(sig, msg)),
        ("keyturn verify_token", keyturn_verify),
        ("PyJWT", pyjwt_verify),
        ("joserfc", joserfc_verify),
        ("minimal verify (floor, unsafe)", minimal_verify(fx)),
    ]
    verifier = verifier_impl(fx)
    if verifier is not None:
        impls.append(verifier)
    return impls


def verifier_impl(fx: Fixture) -> tuple[str, Callable[[], object]] | None:
    """keyturn.verifier's warm-cache path, on an httpx.MockTransport-served JWKS (no network).

    The verifier library is written concurrently with this suite; this adapts to its API when
    it exists and is skipped (with a note) otherwise.
    """
    from bench import verifier_adapter

    return verifier_adapter.build(fx, ISSUER, AUDIENCE)


# --- the benchmarks ---------------------------------------------------------------------------
def _check(impls: list[tuple[str, Callable[[], object]]], what: str) -> None:
    """Every implementation must succeed once before it is timed (an error is not a speed)."""
    for name, fn in impls:
        try:
            fn()
        except Exception as exc:
            raise RuntimeError(f"{what}: {name} failed: {exc!r}") from exc


def _quiet_joserfc() -> None:
    # joserfc warns on every "EdDSA" token (RFC 9864 deprecates the name); keyturn still issues
    # EdDSA, which every verifier understands, so the warning is expected here.
    warnings.filterwarnings("ignore", message=".*EdDSA is deprecated.*")


def run_sign(mode: Mode) -> list[Row]:
    _quiet_joserfc()
    now = int(time.time())
    rows: list[Row] = []
    for alg in mode.algs or ALGS:
        fx = fixture(alg, now)
        impls = sign_impls(fx, now)
        _check(impls, f"{alg} sign")
        res = interleaved(impls, mode)
        case = f"{alg} sign ({len(fx.signing_input)}-byte input)"
        alg_rows = [Row("sign", case, name, "ops/s", vals) for name, vals in res.items()]
        with_ratios(alg_rows, alg_rows[0])
        _print(alg_rows)
        rows += alg_rows
        if mode.profile:
            profile(f"keyturn {alg} sign", impls[1][1], impls[0][1], mode)
    return rows


def run_verify(mode: Mode) -> list[Row]:
    _quiet_joserfc()
    now = int(time.time())
    rows: list[Row] = []
    for alg in mode.algs or ALGS:
        fx = fixture(alg, now)
        impls = verify_impls(fx)
        _check(impls, f"{alg} verify")
        res = interleaved(impls, mode)
        case = f"{alg} verify"
        alg_rows = [Row("verify", case, name, "ops/s", vals) for name, vals in res.items()]
        with_ratios(alg_rows, alg_rows[0])
        _print(alg_rows)
        rows += alg_rows
        if mode.profile:
            profile(f"keyturn {alg} verify", impls[1][1], impls[0][1], mode)
    return rows


def _print(rows: list[Row]) -> None:
    for r in rows:
        lo, hi = r.ratio_spread or (0.0, 0.0)
        say(
            f"  {r.case:<28} {r.impl:<30} {r.median:>10,.0f} {r.unit}  "
            f"±{r.spread * 50:4.1f}%  ratio {r.ratio:.3f} ({lo:.3f}-{hi:.3f})"
        )


def profile(title: str, fn: Callable[[], object], raw: Callable[[], object], mode: Mode) -> None:
    """Where keyturn's time goes beyond the primitive: own time per call of the top functions.

    cProfile inflates Python-level costs (every call is hooked), so read the shares, not the
    absolute figures; the unprofiled gap to the primitive is printed first.
    """
    n = mode.iterations or max(2000, int(20000 * mode.seconds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_fn = 1 / rate(fn, n)
        t_raw = 1 / rate(raw, n)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            fn()
        prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO())
    stats = st.stats  # type: ignore[attr-defined]
    total = st.total_tt  # type: ignore[attr-defined]
    say(
        f"\n  profile: {title}: {t_fn * 1e6:.1f} µs/call unprofiled, primitive "
        f"{t_raw * 1e6:.1f} µs, gap {(t_fn - t_raw) * 1e6:.1f} µs; under cProfile "
        f"{total / n * 1e6:.1f} µs/call, own time per call:"
    )
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:12]
    for (file, line, func), (_cc, ncalls, tt, _ct, _callers) in top:
        where = f"{Path(file).name}:{line}({func})" if line else func
        say(f"    {tt / n * 1e6:8.2f} µs {tt / total:5.0%}  {ncalls / n:4.1f}x  {where}")
