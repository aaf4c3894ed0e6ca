"""The software backend: keys generated in process, PKCS#8 sealed under the master key."""

from __future__ import annotations

from collections.abc import Callable

from keyturn.errors import KeyObjectMissingError
from keyturn.keys.algorithms import Alg, PrivateKey, PublicKey
from keyturn.keys.backends.base import BackendKind, KeyRef, NewKey, RawSigner
from keyturn.keys.generate import generate_private_key
from keyturn.keys.jwk import public_jwk
from keyturn.keys.sealing import Sealer
from keyturn.keys.signing import SigningKey


class SoftwareBackend:
    """Today's sealed keys behind the backend interface; the sealer may be swapped (re-seal)."""

    kind = BackendKind.SOFTWARE

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer
        # How a sealed blob is opened; the service sets its own (it reloads the master keys
        # when a blob names one not loaded yet). (blob, master key id, tenant, kid) -> key.
        self.open_sealed: Callable[[bytes, str, str, str], PrivateKey] | None = None

    def _new(
        self,
        tenant: str,
        alg: Alg,
        key: PrivateKey,
        x5c: list[str] | None = None,
        x5t: str | None = None,
    ) -> NewKey:
        # The JWK's kid is the RFC 7638 thumbprint; computed once (the sweep makes many keys).
        jwk = public_jwk(key, alg, None, x5c, x5t)
        kid = jwk["kid"]
        blob, mkid = self.sealer.seal(key, tenant, kid)
        return NewKey(kid, jwk, KeyRef(sealed_private=blob, master_key_id=mkid))

    def generate(self, tenant: str, alg: Alg, rsa_bits: int) -> NewKey:
        return self._new(tenant, alg, generate_private_key(alg, rsa_bits))

    def adopt(
        self,
        tenant: str,
        alg: Alg,
        key: PrivateKey,
        *,
        x5c: list[str] | None = None,
        x5t: str | None = None,
    ) -> NewKey:
        return self._new(tenant, alg, key, x5c, x5t)

    def _open(self, tenant: str, kid: str, ref: KeyRef) -> PrivateKey:
        if ref.sealed_private is None or ref.master_key_id is None:
            raise KeyObjectMissingError(f"key {kid} of tenant {tenant} holds no private material")
        opener = self.open_sealed or self.sealer.open
        return opener(ref.sealed_private, ref.master_key_id, tenant, kid)

    def public_key(self, tenant: str, kid: str, ref: KeyRef) -> PublicKey:
        return self._open(tenant, kid, ref).public_key()

    def signer(self, tenant: str, kid: str, alg: Alg, ref: KeyRef) -> RawSigner:
        return SigningKey(self._open(tenant, kid, ref), alg)

    def destroy(self, tenant: str, kid: str, ref: KeyRef) -> bool:
        # The sealed blob lives in the key's row: the ring's transition overwrites it with NULL
        # in the same transaction, so there is nothing outside the database to destroy.
        return ref.sealed_private is not None

    def check(self) -> None:
        return None
