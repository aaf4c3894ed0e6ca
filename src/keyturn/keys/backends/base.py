"""The key backend interface: where a tenant's private keys live and how they sign.

A backend generates a key pair, exports its public half, signs JWS signing inputs and destroys
the private half. The key ring stores only a :class:`KeyRef` per key: a sealed blob for the
software backend, a token object id and label for PKCS#11, never key material that leaves a
token. Cloud KMS backends fit the same shape (docs/key-backends.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import Alg, PrivateKey, PublicKey

MAX_BACKEND_URI = 1024


class BackendKind(StrEnum):
    """Where a tenant's private keys live."""

    SOFTWARE = "software"  # PKCS#8 sealed under the master key, in the database
    PKCS11 = "pkcs11"  # generated inside a PKCS#11 token, never exported


@dataclass(frozen=True)
class BackendSpec:
    """A tenant's key backend as stored on its row: the kind and, for a token, its URI.

    The URI names the token (RFC 7512) and where its PIN comes from; it never holds the PIN.
    """

    kind: BackendKind = BackendKind.SOFTWARE
    uri: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, BackendKind):
            try:
                object.__setattr__(self, "kind", BackendKind(str(self.kind)))
            except ValueError:
                raise InvalidInputError(
                    f"unknown key backend {self.kind!r}: use one of "
                    + ", ".join(k.value for k in BackendKind)
                ) from None
        if self.kind == BackendKind.SOFTWARE and self.uri is not None:
            raise InvalidInputError("the software key backend takes no URI")
        if self.kind == BackendKind.PKCS11:
            if not self.uri:
                raise InvalidInputError("the pkcs11 key backend needs a URI (--pkcs11-uri)")
            if len(self.uri) > MAX_BACKEND_URI:
                raise InvalidInputError(f"key backend URI longer than {MAX_BACKEND_URI} characters")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "uri": self.uri}


SOFTWARE = BackendSpec()


@dataclass(frozen=True)
class KeyRef:
    """What the key ring stores about a key's private half (never material out of a token)."""

    sealed_private: bytes | None = field(default=None, repr=False)
    master_key_id: str | None = None
    token_object_id: str | None = None  # CKA_ID, hex
    token_label: str | None = None  # CKA_LABEL


@dataclass(frozen=True)
class NewKey:
    """A freshly generated (or, for software, imported) key: its public JWK and its ref."""

    kid: str
    public_jwk: dict[str, Any]
    ref: KeyRef


class RawSigner(Protocol):
    """Signs a JWS signing input; returns the JWS signature bytes (RFC 7518 encoding)."""

    def sign(self, data: bytes) -> bytes: ...


class KeyBackend(Protocol):
    """Generate, export the public key, sign, destroy; ``check`` for readiness.

    Every method raises a :class:`keyturn.errors.KeyBackendError` subclass when the backend
    cannot do its job (token absent, wrong PIN, object missing), so the caller changes no key
    state and readiness can say why.
    """

    @property
    def kind(self) -> BackendKind: ...

    def generate(self, tenant: str, alg: Alg, rsa_bits: int) -> NewKey: ...

    def adopt(
        self,
        tenant: str,
        alg: Alg,
        key: PrivateKey,
        *,
        x5c: list[str] | None = None,
        x5t: str | None = None,
    ) -> NewKey:
        """Take an imported private key, or refuse (a token backend refuses)."""
        ...

    def public_key(self, tenant: str, kid: str, ref: KeyRef) -> PublicKey: ...

    def signer(self, tenant: str, kid: str, alg: Alg, ref: KeyRef) -> RawSigner: ...

    def destroy(self, tenant: str, kid: str, ref: KeyRef) -> bool:
        """Destroy the private half; True if something was destroyed, False if already gone."""
        ...

    def check(self) -> None:
        """Raise unless the backend can sign now (token present, logged in)."""
        ...
