"""The PKCS#11 backend: private keys generated inside a token, never exported.

Each key is a token object pair (private + public) sharing a random ``CKA_ID``; the private
object is created ``CKA_SENSITIVE`` true, ``CKA_EXTRACTABLE`` false and ``CKA_SIGN`` only, and
keyturn checks the token honoured that before the key may join a ring. The ring stores the id
and the label (``keyturn:<tenant>:<kid>``), nothing else.

Signatures are the JWS bytes of RFC 7518, as the software path makes them:
- RS256/384/512: ``CKM_SHA{256,384,512}_RSA_PKCS`` (PKCS#1 v1.5, the token hashes);
- PS256: ``CKM_SHA256_RSA_PKCS_PSS`` with explicit parameters SHA-256, MGF1-SHA256 and a
  32-byte salt (the library's default parameters are SHA-1/MGF1-SHA1/20, which no JWS verifier
  accepts);
- ES256/384/512: ``CKM_ECDSA`` over a digest computed here (many tokens, SoftHSM among them,
  lack the hashing ECDSA mechanisms; the digest is not secret). ``CKM_ECDSA`` already returns
  raw fixed-width ``r || s``, which is the JWS form: no DER conversion, only the low-S choice;
- EdDSA: ``CKM_EDDSA`` (Ed25519, where the token has it).

One session per backend, guarded by a lock: PKCS#11 forbids concurrent operations on one
session. A lost session (token reset, ``C_Finalize`` by someone else) is reopened once per
operation; if that fails the caller gets :class:`TokenUnavailableError` and no key state
changes. A PIN the token refused is remembered by hash and never presented again until the PIN
source yields another one: real HSMs lock a user after a few wrong tries, and readiness probes
would otherwise burn them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyturn.errors import (
    ConfigError,
    KeyBackendError,
    KeyBackendUnsupportedError,
    KeyObjectMissingError,
    TokenLoginError,
    TokenUnavailableError,
)
from keyturn.keys.algorithms import SPECS, Alg, PrivateKey, PublicKey
from keyturn.keys.backends.base import BackendKind, KeyRef, NewKey, RawSigner
from keyturn.keys.backends.pkcs11_uri import Pkcs11Uri
from keyturn.keys.jwk import public_jwk
from keyturn.keys.signing import low_s_raw

PIN_ENV = "KEYTURN_PKCS11_PIN"
PIN_FILE_ENV = "KEYTURN_PKCS11_PIN_FILE"
MODULE_ENV = "KEYTURN_PKCS11_MODULE"
MAX_PIN_BYTES = 256
ID_BYTES = 16

# DER-encoded OIDs for CKA_EC_PARAMS (namedCurve): prime256v1, secp384r1, secp521r1, Ed25519.
_EC_PARAMS = {
    "P-256": bytes.fromhex("06082a8648ce3d030107"),
    "P-384": bytes.fromhex("06052b81040022"),
    "P-521": bytes.fromhex("06052b81040023"),
    "Ed25519": bytes.fromhex("06032b6570"),
}
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}

T = TypeVar("T")


def _p11() -> Any:
    """The ``pkcs11`` package (the ``pkcs11`` extra), imported only when a token is used."""
    try:
        import pkcs11
    except ImportError:
        raise ConfigError(
            "the pkcs11 key backend needs python-pkcs11: pip install 'keyturn[pkcs11]'"
        ) from None
    return pkcs11


@dataclass(frozen=True)
class Pkcs11Config:
    """Which modules may be loaded and where PINs come from; built once from the environment.

    ``modules`` is an allow-list: a URI stored on a tenant row may name a ``module-path``, but
    only one configured here is ever loaded, so whoever can write the database cannot make
    keyturn ``dlopen`` a library of their choosing.
    """

    modules: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Pkcs11Config:
        raw = env.get(MODULE_ENV, "")
        return cls(tuple(p for p in raw.split(os.pathsep) if p), env)

    def module_for(self, uri: Pkcs11Uri) -> str:
        if uri.module_path is not None:
            if uri.module_path not in self.modules:
                raise ConfigError(
                    f"PKCS#11 module {uri.module_path} is not allowed: list it in {MODULE_ENV} "
                    f"(allowed: {', '.join(self.modules) or 'none'})"
                )
            return uri.module_path
        if not self.modules:
            raise ConfigError(
                f"no PKCS#11 module: set {MODULE_ENV} (e.g. /usr/lib/softhsm/libsofthsm2.so)"
            )
        return self.modules[0]

    def read_pin(self, uri: Pkcs11Uri) -> bytes:
        """The PIN, read now from its source; held only for the login call."""
        source = uri.pin_source
        if source is not None:
            if source.startswith("env:"):
                return self._env_pin(source[4:])
            return _file_pin(Path(source[5:] if source.startswith("file:") else source))
        if self.environ.get(PIN_ENV):
            return self._env_pin(PIN_ENV)
        if self.environ.get(PIN_FILE_ENV):
            return _file_pin(Path(self.environ[PIN_FILE_ENV]))
        raise TokenLoginError(
            f"no PIN for token {uri.selector}: set {PIN_ENV} or {PIN_FILE_ENV}, "
            "or add pin-source=file:/path to the tenant's URI"
        )

    def _env_pin(self, name: str) -> bytes:
        value = self.environ.get(name)
        if not value:
            raise TokenLoginError(f"the PIN variable {name} is not set")
        return _bounded(value.encode())


def _bounded(pin: bytes) -> bytes:
    if not pin or len(pin) > MAX_PIN_BYTES:
        raise TokenLoginError(f"a token PIN must be 1 to {MAX_PIN_BYTES} bytes")
    try:
        pin.decode()
    except UnicodeDecodeError:
        raise TokenLoginError("a token PIN must be UTF-8 text") from None
    return pin


def _file_pin(path: Path) -> bytes:
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise TokenLoginError(
                f"PIN file {path} is readable by others: it must be readable by its owner only "
                f"(chmod 600 {path})"
            )
        if st.st_size > MAX_PIN_BYTES + 2:
            raise TokenLoginError(f"PIN file {path} is larger than {MAX_PIN_BYTES} bytes")
        return _bounded(path.read_bytes().rstrip(b"\r\n"))
    except OSError as exc:
        raise TokenLoginError(f"PIN file {path} cannot be read: {exc.strerror}") from None


def _mechanisms(alg: Alg) -> tuple[str, ...]:
    """Names of the ``pkcs11.Mechanism`` members an algorithm needs (generation, signing)."""
    spec = SPECS[alg]
    if spec.family == "rsa-pkcs1":
        return ("RSA_PKCS_KEY_PAIR_GEN", f"SHA{alg.value[2:]}_RSA_PKCS")
    if spec.family == "rsa-pss":
        return ("RSA_PKCS_KEY_PAIR_GEN", "SHA256_RSA_PKCS_PSS")
    if spec.family == "ecdsa":
        return ("EC_KEY_PAIR_GEN", "ECDSA")
    return ("EC_EDWARDS_KEY_PAIR_GEN", "EDDSA")


def _der_octet_string(der: bytes) -> bytes:
    """The content of a DER OCTET STRING (CKA_EC_POINT is one), or the bytes if raw."""
    if len(der) >= 2 and der[0] == 0x04:
        n = der[1]
        if n < 0x80 and len(der) == 2 + n:
            return der[2:]
        if n == 0x81 and len(der) >= 3 and len(der) == 3 + der[2]:
            return der[3:]
    return der


class Pkcs11Signer:
    """A prepared signer for one token key: the mechanism and parameters fixed once."""

    __slots__ = ("_backend", "_digest", "_mech", "_param", "_post", "alg", "object_id")

    def __init__(self, backend: Pkcs11Backend, object_id: bytes, alg: Alg) -> None:
        p = _p11()
        spec = SPECS[alg]
        self._backend = backend
        self.object_id = object_id
        self.alg = alg
        self._param: Any = None
        self._digest: Callable[[bytes], bytes] | None = None
        self._post: Callable[[bytes], bytes] | None = None
        if spec.family == "rsa-pkcs1":
            self._mech = getattr(p.Mechanism, f"SHA{alg.value[2:]}_RSA_PKCS")
        elif spec.family == "rsa-pss":
            # RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash output.
            self._mech = p.Mechanism.SHA256_RSA_PKCS_PSS
            self._param = (p.Mechanism.SHA256, p.MGF.SHA256, 32)
        elif spec.family == "ecdsa":
            assert spec.hash is not None and spec.crv is not None
            self._mech = p.Mechanism.ECDSA
            hash_cls = spec.hash
            crv = spec.crv
            size = spec.coord_size

            def digest(data: bytes) -> bytes:
                h = hashes.Hash(hash_cls())
                h.update(data)
                return h.finalize()

            def post(sig: bytes) -> bytes:
                if len(sig) != 2 * size:
                    raise KeyBackendError(
                        f"the token returned a {len(sig)}-byte ECDSA signature; "
                        f"{alg.value} needs {2 * size} (raw r||s)"
                    )
                return low_s_raw(sig, crv)

            self._digest = digest
            self._post = post
        else:
            self._mech = p.Mechanism.EDDSA

    def sign(self, data: bytes) -> bytes:
        msg = self._digest(data) if self._digest is not None else data
        sig = self._backend.sign_raw(self.object_id, self._mech, self._param, msg)
        return self._post(sig) if self._post is not None else sig


class Pkcs11Backend:
    """One token, one logged-in session, every key operation keyturn needs on it."""

    kind = BackendKind.PKCS11

    def __init__(self, uri: Pkcs11Uri, config: Pkcs11Config) -> None:
        self.uri = uri
        self.config = config
        self.module = config.module_for(uri)
        self._lock = threading.RLock()
        self._session: Any = None
        self._mechs: frozenset[Any] = frozenset()
        self._keys: dict[bytes, Any] = {}  # object handles, valid for the current session
        self._refused_pin: bytes | None = None  # sha256 of the last PIN the token refused

    # --- session ---------------------------------------------------------------------
    def _find_token(self, lib: Any) -> Any:
        uri = self.uri
        matches = []
        for slot in lib.get_slots(token_present=True):
            if uri.slot_id is not None and slot.slot_id != uri.slot_id:
                continue
            tok = slot.get_token()
            if uri.token is not None and tok.label != uri.token:
                continue
            if uri.serial is not None and tok.serial.decode(errors="replace") != uri.serial:
                continue
            if uri.manufacturer is not None and tok.manufacturer_id != uri.manufacturer:
                continue
            if uri.model is not None and tok.model != uri.model:
                continue
            matches.append(tok)
        if not matches:
            raise TokenUnavailableError(f"no PKCS#11 token {uri.selector} is present")
        if len(matches) > 1:
            raise TokenUnavailableError(
                f"{len(matches)} tokens match {uri.selector}: name one (token=, serial=)"
            )
        return matches[0]

    def _connect(self) -> Any:
        p = _p11()
        try:
            lib = p.lib(self.module)
        except (OSError, p.PKCS11Error) as exc:
            raise TokenUnavailableError(
                f"PKCS#11 module {self.module} cannot be loaded: {type(exc).__name__}"
            ) from None
        try:
            token = self._find_token(lib)
            pin = self.config.read_pin(self.uri)
            pin_hash = hashlib.sha256(pin).digest()
            if self._refused_pin is not None and secrets.compare_digest(
                pin_hash, self._refused_pin
            ):
                raise TokenLoginError(
                    f"token {self.uri.selector} refused this PIN before; not trying it again "
                    "(a token locks its user after a few wrong PINs): fix the PIN source"
                )
            try:
                session = token.open(rw=True, user_pin=pin.decode())
            except p.UserAlreadyLoggedIn:
                # Another session of this process (another URI for the same token) logged in;
                # login state is per application, so a plain session is logged in too.
                session = token.open(rw=True)
            except (p.PinIncorrect, p.PinInvalid, p.PinLenRange) as exc:
                self._refused_pin = pin_hash
                raise TokenLoginError(
                    f"token {self.uri.selector} refused the PIN ({type(exc).__name__})"
                ) from None
            except (p.PinLocked, p.PinExpired) as exc:
                raise TokenLoginError(
                    f"token {self.uri.selector}: the user PIN is {type(exc).__name__[3:].lower()}"
                ) from None
            self._refused_pin = None
            self._mechs = frozenset(token.slot.get_mechanisms())
        except KeyBackendError:
            raise
        except p.PKCS11Error as exc:
            raise TokenUnavailableError(
                f"token {self.uri.selector} is unavailable: {type(exc).__name__}"
            ) from None
        self._session = session
        self._keys.clear()
        return session

    def _reset(self) -> None:
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None:
            # The session is usually already gone: closing it is best effort.
            with contextlib.suppress(Exception):
                session.close()

    def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)``; a lost session is reopened once, then the error is the caller's."""
        p = _p11()
        lost = (
            p.SessionHandleInvalid,
            p.SessionClosed,
            p.DeviceRemoved,
            p.DeviceError,
            p.TokenNotPresent,
            p.UserNotLoggedIn,
        )
        with self._lock:
            for attempt in (0, 1):
                session = self._session if self._session is not None else self._connect()
                try:
                    return fn(session)
                except KeyBackendError:
                    raise
                except lost as exc:
                    self._reset()
                    if attempt:
                        raise TokenUnavailableError(
                            f"{what}: the session to token {self.uri.selector} was lost "
                            f"({type(exc).__name__}) and could not be reopened"
                        ) from None
                except p.PKCS11Error as exc:
                    # "Not initialized" (someone called C_Finalize) has no class of its own.
                    if "not initialized" in str(exc).lower() and not attempt:
                        self._reset()
                        continue
                    raise KeyBackendError(
                        f"{what} on token {self.uri.selector} failed: {type(exc).__name__}"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- objects ---------------------------------------------------------------------
    def _private(self, session: Any, object_id: bytes) -> Any:
        key = self._keys.get(object_id)
        if key is None:
            p = _p11()
            found = list(
                session.get_objects(
                    {p.Attribute.CLASS: p.ObjectClass.PRIVATE_KEY, p.Attribute.ID: object_id}
                )
            )
            if not found:
                raise KeyObjectMissingError(
                    f"token {self.uri.selector} has no private key with id {object_id.hex()}"
                )
            key = found[0]
            self._keys[object_id] = key
        return key

    def _public(self, session: Any, object_id: bytes) -> PublicKey:
        p = _p11()
        A = p.Attribute
        found = list(session.get_objects({A.CLASS: p.ObjectClass.PUBLIC_KEY, A.ID: object_id}))
        if not found:
            raise KeyObjectMissingError(
                f"token {self.uri.selector} has no public key with id {object_id.hex()}"
            )
        obj = found[0]
        kt = obj[A.KEY_TYPE]
        if kt == p.KeyType.RSA:
            n = int.from_bytes(obj[A.MODULUS], "big")
            e = int.from_bytes(obj[A.PUBLIC_EXPONENT], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        params = bytes(obj[A.EC_PARAMS])
        point = _der_octet_string(bytes(obj[A.EC_POINT]))
        for crv, der in _EC_PARAMS.items():
            if der == params:
                if crv == "Ed25519":
                    return ed25519.Ed25519PublicKey.from_public_bytes(point)
                return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[crv], point)
        raise KeyBackendUnsupportedError(f"token key {object_id.hex()} is on an unknown curve")

    @staticmethod
    def _id(ref: KeyRef) -> bytes:
        if ref.token_object_id is None:
            raise KeyObjectMissingError("the key has no token object id")
        return bytes.fromhex(ref.token_object_id)

    # --- the interface ---------------------------------------------------------------
    def generate(self, tenant: str, alg: Alg, rsa_bits: int) -> NewKey:
        p = _p11()
        A = p.Attribute
        spec = SPECS[alg]
        object_id = secrets.token_bytes(ID_BYTES)

        def gen(session: Any) -> NewKey:
            missing = [m for m in _mechanisms(alg) if getattr(p.Mechanism, m) not in self._mechs]
            if missing:
                raise KeyBackendUnsupportedError(
                    f"token {self.uri.selector} cannot do {alg.value}: it lacks "
                    + ", ".join(f"CKM_{m}" for m in missing)
                )
            private_template = {
                A.TOKEN: True,
                A.PRIVATE: True,
                A.SENSITIVE: True,
                A.EXTRACTABLE: False,
                A.SIGN: True,
                A.DECRYPT: False,
                A.UNWRAP: False,
                A.DERIVE: False,
            }
            common: dict[str, Any] = {
                "id": object_id,
                "label": f"keyturn:{tenant}:pending",
                "store": True,
                "capabilities": p.MechanismFlag.SIGN | p.MechanismFlag.VERIFY,
                "private_template": private_template,
            }
            if spec.kty == "RSA":
                _pub, priv = session.generate_keypair(p.KeyType.RSA, rsa_bits, **common)
            elif spec.kty == "EC":
                assert spec.crv is not None
                params = session.create_domain_parameters(
                    p.KeyType.EC, {A.EC_PARAMS: _EC_PARAMS[spec.crv]}, local=True
                )
                _pub, priv = params.generate_keypair(**common)
            else:
                _pub, priv = session.generate_keypair(
                    p.KeyType.EC_EDWARDS,
                    mechanism=p.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    public_template={A.EC_PARAMS: _EC_PARAMS["Ed25519"]},
                    **common,
                )
            try:
                # A token may ignore a template attribute; a key it would let out is refused.
                if priv[A.EXTRACTABLE] or not priv[A.SENSITIVE]:
                    raise KeyBackendUnsupportedError(
                        f"token {self.uri.selector} made an extractable private key; refused"
                    )
                jwk = public_jwk(self._public(session, object_id), alg)
                label = f"keyturn:{tenant}:{jwk['kid']}"
                for obj in session.get_objects({A.ID: object_id}):
                    obj[A.LABEL] = label
            except BaseException:
                self._destroy_id(session, object_id)
                raise
            return NewKey(
                jwk["kid"], jwk, KeyRef(token_object_id=object_id.hex(), token_label=label)
            )

        return self._run(f"generating a {alg.value} key", gen)

    def adopt(
        self,
        tenant: str,
        alg: Alg,
        key: PrivateKey,
        *,
        x5c: list[str] | None = None,
        x5t: str | None = None,
    ) -> NewKey:
        # Decided: never. An imported key existed outside the token (CKA_LOCAL false,
        # CKA_NEVER_EXTRACTABLE false), so copies may exist; a tenant that chose a token was
        # promised keys that never left one. Tokens that accept C_CreateObject or C_UnwrapKey
        # for private keys would allow it, but the promise would be broken all the same.
        raise KeyBackendUnsupportedError(
            f"tenant {tenant} keeps its keys in a PKCS#11 token: a key made outside the token "
            "cannot be imported (copies of it may exist outside). Import into a software "
            "tenant, or rotate to get a key generated inside the token"
        )

    def public_key(self, tenant: str, kid: str, ref: KeyRef) -> PublicKey:
        object_id = self._id(ref)
        return self._run("reading a public key", lambda s: self._public(s, object_id))

    def signer(self, tenant: str, kid: str, alg: Alg, ref: KeyRef) -> RawSigner:
        object_id = self._id(ref)

        def find(session: Any) -> Any:
            # Looked up afresh, not from the handle cache: readiness asks through here whether
            # the object is still in the token.
            self._keys.pop(object_id, None)
            return self._private(session, object_id)

        self._run("finding a signing key", find)
        return Pkcs11Signer(self, object_id, alg)

    def sign_raw(self, object_id: bytes, mechanism: Any, param: Any, data: bytes) -> bytes:
        p = _p11()

        def sign(session: Any) -> bytes:
            key = self._private(session, object_id)
            try:
                return bytes(key.sign(data, mechanism=mechanism, mechanism_param=param))
            except (p.KeyHandleInvalid, p.ObjectHandleInvalid):
                # The object was destroyed behind keyturn's back: look it up afresh.
                self._keys.pop(object_id, None)
                key = self._private(session, object_id)
                return bytes(key.sign(data, mechanism=mechanism, mechanism_param=param))

        return self._run("signing", sign)

    def _destroy_id(self, session: Any, object_id: bytes) -> bool:
        p = _p11()
        self._keys.pop(object_id, None)
        objs = list(session.get_objects({p.Attribute.ID: object_id}))
        for obj in objs:
            obj.destroy()
        return bool(objs)

    def destroy(self, tenant: str, kid: str, ref: KeyRef) -> bool:
        object_id = self._id(ref)
        return self._run("destroying a key", lambda s: self._destroy_id(s, object_id))

    def check(self) -> None:
        p = _p11()

        def probe(session: Any) -> None:
            # A search exercises the session handle and the login (a lost session is reopened
            # here). Whether a given key's object is still there is ``signer``'s question.
            list(session.get_objects({p.Attribute.ID: b"keyturn-probe"}))

        self._run("checking the token", probe)

    def close(self) -> None:
        with self._lock:
            self._reset()
