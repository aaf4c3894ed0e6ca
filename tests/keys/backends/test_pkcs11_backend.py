"""The PKCS#11 backend on a SoftHSM2 token: JWS bytes like the software path, keys that stay in."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet as JoseKeySet

from keyturn import errors as E
from keyturn.keys.algorithms import Alg
from keyturn.keys.backends import KeyBackends, KeyRef
from keyturn.keys.backends.pkcs11 import PIN_ENV, PIN_FILE_ENV, Pkcs11Backend, Pkcs11Config
from keyturn.keys.backends.pkcs11_uri import parse_pkcs11_uri
from keyturn.keys.generate import generate_private_key
from keyturn.keys.jwk import public_key_from_jwk, thumbprint
from keyturn.keys.signing import CURVE_ORDERS
from keyturn.tokens.jws import parse_compact
from keyturn.tokens.keyset import KeySet
from keyturn.tokens.signer import TokenSigner
from keyturn.tokens.verify import verify_token

from .conftest import SoftHsm

# These tests finalise the PKCS#11 module under live sessions (a token reset, a vanished
# device). python-pkcs11's operation finaliser then cancels on a module that is gone and the
# interpreter prints "Exception ignored"; that is the library tidying up, not a keyturn error.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. 'pkcs11._pkcs11.OperationContext.__del__'"
    ":pytest.PytestUnraisableExceptionWarning"
)
CLAIMS = {"sub": "alice", "aud": "api", "exp": 4_000_000_000}


def _backend(backends: KeyBackends, softhsm: SoftHsm, uri: str | None = None) -> Pkcs11Backend:
    from keyturn.keys.backends import BackendSpec

    b = backends.for_spec(BackendSpec("pkcs11", uri or softhsm.uri))  # type: ignore[arg-type]
    assert isinstance(b, Pkcs11Backend)
    return b


@pytest.mark.parametrize("alg", list(Alg), ids=[a.value for a in Alg])
def test_token_signs_jws_like_the_software_path(
    alg: Alg, backends: KeyBackends, softhsm: SoftHsm
) -> None:
    b = _backend(backends, softhsm)
    new = b.generate("acme", alg, 2048)
    assert new.kid == thumbprint(public_key_from_jwk(new.public_jwk))
    assert new.ref.sealed_private is None and new.ref.token_label == f"keyturn:acme:{new.kid}"
    token = TokenSigner(b.signer("acme", new.kid, alg, new.ref), alg, new.kid).sign(CLAIMS)
    # The same header the software path writes, and the signature verifies everywhere.
    soft_key = generate_private_key(alg, 2048)
    soft = TokenSigner(soft_key, alg, new.kid).sign(CLAIMS)
    assert token.split(".")[0] == soft.split(".")[0]
    assert (
        jwt.decode(token, jwt.PyJWK(new.public_jwk).key, algorithms=[alg.value], audience="api")[
            "sub"
        ]
        == "alice"
    )
    with warnings.catch_warnings():
        # joserfc warns on "EdDSA" (RFC 9864 deprecates the name); keyturn still issues it.
        warnings.filterwarnings("ignore", message=".*EdDSA is deprecated.*")
        keys = JoseKeySet.import_key_set({"keys": [new.public_jwk]})
        decoded = jose_jwt.decode(token, keys, algorithms=[alg.value])
    assert decoded.claims["sub"] == "alice"
    claims, _ = verify_token(
        token, KeySet.from_jwks({"keys": [new.public_jwk]}), algorithms=[alg], now=1_000_000_000
    )
    assert claims["aud"] == "api"
    sig = parse_compact(token, allowed_algs=[alg]).signature
    if alg.value.startswith("ES"):
        # CKM_ECDSA's raw r||s is the JWS form; keyturn picks low S as the software path does.
        crv = new.public_jwk["crv"]
        size = {"P-256": 32, "P-384": 48, "P-521": 66}[crv]
        assert len(sig) == 2 * size
        assert int.from_bytes(sig[size:], "big") <= CURVE_ORDERS[crv] // 2
    assert b.destroy("acme", new.kid, new.ref) is True


def test_pss_uses_sha256_mgf1_sha256_and_a_32_byte_salt(
    backends: KeyBackends, softhsm: SoftHsm
) -> None:
    b = _backend(backends, softhsm)
    new = b.generate("acme", Alg.PS256, 2048)
    data = b"header.payload"
    sig = b.signer("acme", new.kid, Alg.PS256, new.ref).sign(data)
    pub = public_key_from_jwk(new.public_jwk)
    pub.verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())  # type: ignore[union-attr, call-arg]
    # The library's default PSS parameters (SHA-1, MGF1-SHA1, 20-byte salt) would pass none
    # of the JWS verifiers; pin that the salt is not the default one.
    with pytest.raises(InvalidSignature):
        pub.verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()), 20), hashes.SHA256())  # type: ignore[union-attr, call-arg]
    b.destroy("acme", new.kid, new.ref)


@pytest.mark.parametrize("alg", [Alg.RS256, Alg.ES256, Alg.EdDSA], ids=str)
def test_private_key_object_is_not_extractable(
    alg: Alg, backends: KeyBackends, softhsm: SoftHsm
) -> None:
    import pkcs11
    from pkcs11 import Attribute as A

    b = _backend(backends, softhsm)
    new = b.generate("acme", alg, 2048)
    assert new.ref.token_object_id is not None
    object_id = bytes.fromhex(new.ref.token_object_id)
    with softhsm.session() as s:
        priv = s.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=object_id)
        assert priv[A.EXTRACTABLE] is False
        assert priv[A.SENSITIVE] is True
        assert priv[A.NEVER_EXTRACTABLE] is True
        assert priv[A.ALWAYS_SENSITIVE] is True
        assert priv[A.LOCAL] is True  # generated inside the token
        assert priv[A.SIGN] is True and priv[A.DECRYPT] is False
        secret = A.PRIVATE_EXPONENT if alg == Alg.RS256 else A.VALUE
        with pytest.raises(pkcs11.AttributeSensitive):
            priv[secret]
        # An export attempt: wrap the private key under a session AES key.
        wrapper = s.generate_key(
            pkcs11.KeyType.AES, 256, store=False, capabilities=pkcs11.MechanismFlag.WRAP
        )
        with pytest.raises((pkcs11.KeyUnextractable, pkcs11.KeyNotWrappable)):
            wrapper.wrap_key(priv, mechanism=pkcs11.Mechanism.AES_KEY_WRAP_PAD)
    b.destroy("acme", new.kid, new.ref)


def test_import_into_a_token_is_refused(backends: KeyBackends, softhsm: SoftHsm) -> None:
    b = _backend(backends, softhsm)
    with pytest.raises(E.KeyBackendUnsupportedError, match="cannot be imported") as info:
        b.adopt("acme", Alg.ES256, generate_private_key(Alg.ES256))
    assert info.value.code == "key_backend_unsupported"


def _id(ref: KeyRef) -> bytes:
    assert ref.token_object_id is not None
    return bytes.fromhex(ref.token_object_id)


def test_destroy_is_idempotent_and_a_missing_object_is_named(
    backends: KeyBackends, softhsm: SoftHsm
) -> None:
    import pkcs11

    b = _backend(backends, softhsm)
    new = b.generate("acme", Alg.ES256, 2048)
    signer = b.signer("acme", new.kid, Alg.ES256, new.ref)
    signer.sign(b"x")  # caches the object handle
    # Deleted behind keyturn's back: the next signature names the missing object.
    with softhsm.session() as s:
        for obj in s.get_objects({pkcs11.Attribute.ID: _id(new.ref)}):
            obj.destroy()
    with pytest.raises(E.KeyObjectMissingError) as info:
        signer.sign(b"x")
    assert info.value.code == "key_object_missing"
    with pytest.raises(E.KeyObjectMissingError):
        b.signer("acme", new.kid, Alg.ES256, new.ref)  # what readiness asks
    b.check()  # the token itself is fine
    assert b.destroy("acme", new.kid, new.ref) is False


def test_lost_session_is_reopened(backends: KeyBackends, softhsm: SoftHsm) -> None:
    b = _backend(backends, softhsm)
    new = b.generate("acme", Alg.ES256, 2048)
    signer = b.signer("acme", new.kid, Alg.ES256, new.ref)
    pub = public_key_from_jwk(new.public_jwk)
    signer.sign(b"before")
    softhsm.reinitialize()  # every session handle of this process is now invalid
    sig = signer.sign(b"after")
    assert KeySet.from_jwks({"keys": [new.public_jwk]}) and len(sig) == 64
    del pub
    b.destroy("acme", new.kid, new.ref)


def test_token_absent_mid_run_is_token_unavailable(backends: KeyBackends, softhsm: SoftHsm) -> None:
    b = _backend(backends, softhsm)
    new = b.generate("acme", Alg.ES256, 2048)
    signer = b.signer("acme", new.kid, Alg.ES256, new.ref)
    away = softhsm.tokens.with_name("tokens-away")
    os.rename(softhsm.tokens, away)
    try:
        softhsm.reinitialize(may_fail=True)  # the token is gone, and every session with it
        with pytest.raises(E.TokenUnavailableError) as info:
            signer.sign(b"x")
        assert info.value.code == "token_unavailable"
        with pytest.raises(E.TokenUnavailableError):
            b.check()
    finally:
        os.rename(away, softhsm.tokens)
        softhsm.reinitialize()
    assert len(signer.sign(b"x")) == 64  # back without a restart
    b.destroy("acme", new.kid, new.ref)


def test_no_such_token(backends: KeyBackends, softhsm: SoftHsm) -> None:
    b = _backend(backends, softhsm, "pkcs11:token=not-there")
    with pytest.raises(E.TokenUnavailableError, match="no PKCS#11 token token=not-there"):
        b.generate("acme", Alg.ES256, 2048)


def test_wrong_pin_is_never_retried_until_the_pin_changes(
    backends: KeyBackends, softhsm: SoftHsm, p11_env: dict[str, str]
) -> None:
    p11_env[PIN_ENV] = "wrong-pin"
    b = Pkcs11Backend(parse_pkcs11_uri(softhsm.uri), Pkcs11Config((softhsm.module,), p11_env))
    try:
        with pytest.raises(E.TokenLoginError, match="refused the PIN") as info:
            b.check()
        assert info.value.code == "token_login_failed"
        # Readiness probes must not burn the token's retry counter: same PIN, no C_Login.
        with pytest.raises(E.TokenLoginError, match="not trying it again"):
            b.check()
        p11_env[PIN_ENV] = softhsm.pin
        b.check()
    finally:
        b.close()


def test_pin_sources(softhsm: SoftHsm, tmp_path: Path) -> None:
    cfg = Pkcs11Config((softhsm.module,), {})
    with pytest.raises(E.TokenLoginError, match="KEYTURN_PKCS11_PIN"):
        cfg.read_pin(parse_pkcs11_uri(softhsm.uri))
    pin = tmp_path / "pin"
    pin.write_text(softhsm.pin + "\n")
    pin.chmod(0o644)
    uri = parse_pkcs11_uri(f"{softhsm.uri}?pin-source=file:{pin}")
    with pytest.raises(E.TokenLoginError, match="chmod 600"):
        cfg.read_pin(uri)
    pin.chmod(0o600)
    assert cfg.read_pin(uri) == softhsm.pin.encode()
    assert (
        Pkcs11Config((softhsm.module,), {PIN_FILE_ENV: str(pin)}).read_pin(
            parse_pkcs11_uri(softhsm.uri)
        )
        == softhsm.pin.encode()
    )
    env_uri = parse_pkcs11_uri(f"{softhsm.uri}?pin-source=env:MY_PIN")
    assert Pkcs11Config((), {"MY_PIN": "1234"}).read_pin(env_uri) == b"1234"


def test_module_path_must_be_allowed(softhsm: SoftHsm) -> None:
    cfg = Pkcs11Config((softhsm.module,), {})
    with pytest.raises(E.ConfigError, match="not allowed"):
        Pkcs11Backend(parse_pkcs11_uri(f"{softhsm.uri}?module-path=/tmp/evil.so"), cfg)
    with pytest.raises(E.ConfigError, match="KEYTURN_PKCS11_MODULE"):
        Pkcs11Backend(parse_pkcs11_uri(softhsm.uri), Pkcs11Config((), {}))


def test_software_ref_has_no_token_fields() -> None:
    assert KeyRef().token_object_id is None
