"""Differential test: whatever keyturn accepts, PyJWT and joserfc accept too.

Tokens come from all three libraries, then are mutated (a character changed in one segment,
segments swapped, the header's alg changed, the kid dropped). keyturn may be stricter than
the others (canonical base64, no extensions), never laxer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt
from joserfc.jwt import JWTClaimsRegistry

from keyturn.errors import TokenError
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_decode, b64url_encode
from keyturn.tokens.verify import verify_token
from tests.keys.material import (
    joserfc_eddsa_allowed,
    jwk_of,
    keyset_of,
    private_key,
    sign_with_header,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Claims other than exp are left to the caller in all three libraries' default modes only when
# absent, so generated claims avoid the registered names.
REGISTERED = {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
claim_sets = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8).filter(
        lambda k: k not in REGISTERED
    ),
    json_values,
    max_size=4,
)
# "none" twice: about a third of the cases are genuine tokens that must verify everywhere.
MUTATIONS = ["none", "none", "char", "swap", "alg", "drop_kid"]


def sign(lib: str, alg: Alg, claims: dict[str, Any], kid: str | None) -> str:
    key = private_key(alg)
    headers = {"kid": kid} if kid else {}
    if lib == "keyturn":
        return sign_with_header({"alg": alg.value, **headers}, claims, key, alg)
    if lib == "pyjwt":
        return pyjwt.encode(claims, key, algorithm=alg.value, headers=headers or None)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with joserfc_eddsa_allowed():
        jkey = joserfc_jwk.import_key(pem, jwk_of(alg)["kty"])  # type: ignore[call-overload]
        token: str = joserfc_jwt.encode(
            {"alg": alg.value, **headers}, claims, jkey, algorithms=[alg.value]
        )
    return token


def mutate(token: str, how: str, data: st.DataObject) -> str:
    parts = token.split(".")
    if how == "char":
        i = data.draw(st.integers(0, 2), label="segment")
        seg = parts[i]
        if seg:
            pos = data.draw(st.integers(0, len(seg) - 1), label="position")
            repl = data.draw(st.sampled_from(ALPHABET.replace(seg[pos], "")), label="char")
            parts[i] = seg[:pos] + repl + seg[pos + 1 :]
    elif how == "swap":
        i, j = data.draw(st.sampled_from([(0, 1), (0, 2), (1, 2)]), label="swap")
        parts[i], parts[j] = parts[j], parts[i]
    elif how in ("alg", "drop_kid"):
        header = json.loads(b64url_decode(parts[0]))
        if how == "alg":
            header["alg"] = data.draw(
                st.sampled_from([a.value for a in Alg] + ["none", "HS256", "es256"]), label="alg"
            )
        else:
            header.pop("kid", None)
        parts[0] = b64url_encode(json.dumps(header).encode()).decode()
    return ".".join(parts)


def pyjwt_accepts(token: str, jwk: dict[str, Any], alg: Alg) -> dict[str, Any]:
    claims: dict[str, Any] = pyjwt.decode(
        token,
        pyjwt.PyJWK(jwk).key,
        algorithms=[alg.value],
        options={"require": ["exp"], "verify_aud": False, "verify_iss": False},
        leeway=0,
    )
    return claims


def joserfc_accepts(token: str, jwk: dict[str, Any], alg: Alg) -> dict[str, Any]:
    with joserfc_eddsa_allowed():
        decoded = joserfc_jwt.decode(token, joserfc_jwk.import_key(jwk), algorithms=[alg.value])  # type: ignore[call-overload]
    JWTClaimsRegistry(exp={"essential": True}).validate(decoded.claims)
    claims: dict[str, Any] = decoded.claims
    return claims


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    alg=st.sampled_from(list(Alg)),
    lib=st.sampled_from(["keyturn", "pyjwt", "joserfc"]),
    extra=claim_sets,
    expired=st.booleans(),
    with_kid=st.booleans(),
    how=st.sampled_from(MUTATIONS),
    data=st.data(),
)
def test_keyturn_never_accepts_what_pyjwt_or_joserfc_reject(
    alg: Alg,
    lib: str,
    extra: dict[str, Any],
    expired: bool,
    with_kid: bool,
    how: str,
    data: st.DataObject,
) -> None:
    now = int(time.time())
    # Far from the boundary so the three libraries' clocks cannot disagree.
    claims = extra | {"exp": now + (-100_000 if expired else 100_000)}
    jwk = jwk_of(alg)
    token = mutate(sign(lib, alg, claims, jwk["kid"] if with_kid else None), how, data)
    try:
        got, _ = verify_token(token, keyset_of(jwk), algorithms=[alg], now=time.time(), leeway=0)
    except TokenError as exc:
        event(f"keyturn rejected: {exc.code}")
        # Unmutated, unexpired tokens must verify: otherwise the property would be vacuous.
        assert how != "none" or expired, f"keyturn rejected a genuine {lib} token"
        return
    event(f"keyturn accepted ({how})")
    assert not expired
    assert got == claims
    assert pyjwt_accepts(token, jwk, alg) == claims
    assert joserfc_accepts(token, jwk, alg) == claims


@pytest.mark.parametrize("lib", ["keyturn", "pyjwt", "joserfc"])
def test_mutated_signatures_keyturn_rejects_are_also_rejected_elsewhere(lib: str) -> None:
    # A fixed sanity case of the property above: a changed signature fails everywhere.
    alg = Alg.ES256
    jwk = jwk_of(alg)
    token = sign(lib, alg, {"exp": int(time.time()) + 600}, jwk["kid"])
    head, sig = token.rsplit(".", 1)
    forged = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    with pytest.raises(TokenError):
        verify_token(forged, keyset_of(jwk), algorithms=[alg], now=time.time())
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt_accepts(forged, jwk, alg)
    from joserfc.errors import BadSignatureError

    with pytest.raises(BadSignatureError):
        joserfc_accepts(forged, jwk, alg)
