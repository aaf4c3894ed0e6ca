"""Disaster recovery: export a tenant's key ring to a file, import it into another store.

The export is a JSON document holding the tenant (issuer, policy) and every key record of its
ring with its state and transition times, so a restored ring publishes the same JWKS and
carries on the same timeline. Private keys stay as they are in the store: sealed with
AES-256-GCM under a master key, bound to tenant and kid. Nothing in the file can sign without
that master key, and the file names it (``master_key_id``).

Integrity: an HMAC-SHA256 over the whole document, under a key derived from the master key
(HKDF, its own label, so the MAC key never equals the sealing key). An import first finds the
named master key, checks the MAC in constant time, then re-derives every kid from its public
key and opens every sealed private key to check it matches: a changed state, time, issuer or
public key is refused (``export_tampered``), as is a blob sealed for another tenant or kid.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyturn.errors import (
    ExportTamperedError,
    InvalidInputError,
    KeyBackendUnsupportedError,
    MasterKeyError,
    TenantExistsError,
)
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_decode, b64url_encode_str
from keyturn.keys.backends import SOFTWARE
from keyturn.keys.jwk import public_key_from_jwk, thumbprint, thumbprint_of_params
from keyturn.keys.jwk import public_params as _public_params
from keyturn.keys.sealing import MasterKey, Sealer
from keyturn.ring.model import PUBLISHED_STATES, KeyRecord, KeyState, Policy, check_tenant_name
from keyturn.ring.ring import Change
from keyturn.service import KeyService

FORMAT = "keyturn.ring-export.v1"
MAX_EXPORT_BYTES = 16 * 1024 * 1024  # a ring is bounded; so is what an import reads
MAX_KEYS = 10_000
_MAC_INFO = b"keyturn/v1|ring-export-mac"
_KEY_FIELDS = (
    "kid",
    "alg",
    "state",
    "public_jwk",
    "created_at",
    "activated_at",
    "deactivated_at",
    "retire_after",
    "retired_at",
    "revoked_at",
    "revocation_reason",
    "origin",
    "master_key_id",
    "sealed_private",
)
_TIME_FIELDS = (
    "activated_at",
    "deactivated_at",
    "retire_after",
    "retired_at",
    "revoked_at",
)


@dataclass(frozen=True)
class ImportResult:
    """What an import restored."""

    tenant: str
    keys: int
    published: int
    master_key_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "keys": self.keys,
            "published": self.published,
            "master_key_id": self.master_key_id,
        }


def _mac_key(master: MasterKey) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_INFO).derive(
        master.secret
    )


def _mac(master: MasterKey, body: dict[str, Any]) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hmac.new(_mac_key(master), canonical, hashlib.sha256).hexdigest()


def _key_doc(rec: KeyRecord) -> dict[str, Any]:
    return {
        "kid": rec.kid,
        "alg": rec.alg.value,
        "state": rec.state.value,
        "public_jwk": rec.public_jwk,
        "created_at": rec.created_at,
        "activated_at": rec.activated_at,
        "deactivated_at": rec.deactivated_at,
        "retire_after": rec.retire_after,
        "retired_at": rec.retired_at,
        "revoked_at": rec.revoked_at,
        "revocation_reason": rec.revocation_reason,
        "origin": rec.origin,
        "master_key_id": rec.master_key_id,
        "sealed_private": b64url_encode_str(rec.sealed_private)
        if rec.sealed_private is not None
        else None,
    }


def _check_record(rec: KeyRecord, tenant: str, sealer: Sealer, *, importing: bool) -> None:
    """The kid is the key's thumbprint and the sealed key (if any) is that same key."""
    try:
        public = public_key_from_jwk(rec.public_jwk)
    except InvalidInputError as exc:
        raise ExportTamperedError(f"key {rec.kid}: {exc.detail}") from None
    params = _public_params(public)
    if thumbprint_of_params(params) != rec.kid or rec.public_jwk.get("kid") != rec.kid:
        raise ExportTamperedError(f"key {rec.kid}: the kid is not its public key's thumbprint")
    if rec.public_jwk.get("alg") != rec.alg.value:
        raise ExportTamperedError(f"key {rec.kid}: the JWK's alg differs from the record's")
    if rec.state in (KeyState.RETIRED, KeyState.REVOKED):
        if rec.sealed_private is not None:
            raise ExportTamperedError(f"key {rec.kid} is {rec.state.value} but holds a private key")
        return
    if rec.sealed_private is None or rec.master_key_id is None:
        raise ExportTamperedError(f"key {rec.kid} is {rec.state.value} but has no private key")
    try:
        private = sealer.open(rec.sealed_private, rec.master_key_id, tenant, rec.kid)
    except MasterKeyError as exc:
        if not importing:
            raise  # the store itself holds a blob this master key cannot open
        # The MAC held, so the master key is right: the blob was moved (the AAD binds tenant
        # and kid) or changed, by someone who could also re-compute the MAC.
        raise ExportTamperedError(
            f"key {rec.kid}: its sealed private key does not open for tenant {tenant} "
            f"and this kid ({exc.detail})"
        ) from None
    if thumbprint(private) != rec.kid:
        raise ExportTamperedError(f"key {rec.kid}: the sealed private key is another key")


def export_ring(service: KeyService, tenant_name: str) -> dict[str, Any]:
    """The tenant's whole ring as an export document (private keys sealed, as stored)."""
    tenant, keys = service.store.tenant_keys(tenant_name)
    if tenant.key_backend != SOFTWARE:
        # Token keys never leave the token: a ring export would restore kids without keys.
        raise KeyBackendUnsupportedError(
            f"tenant {tenant.name!r} keeps its keys in a {tenant.key_backend.kind.value} token: they are"
            " not exported; back the token up with its own tools"
        )
    sealer = service.sealer
    master = sealer.keys[0]
    # A backup that cannot be restored is found now, not on the day it is needed.
    for rec in keys:
        _check_record(rec, tenant.name, sealer, importing=False)
    body: dict[str, Any] = {
        "format": FORMAT,
        "exported_at": service.clock.now(),
        "master_key_id": master.id,
        "sealed_under": sorted({k.master_key_id for k in keys if k.master_key_id}),
        "tenant": {
            "name": tenant.name,
            "issuer": tenant.issuer,
            "policy": tenant.policy.to_dict(),
            "policy_forced": tenant.policy_forced,
        },
        "keys": [_key_doc(k) for k in keys],
    }
    return {**body, "mac": _mac(master, body)}


def dumps(doc: dict[str, Any]) -> bytes:
    # Member order is kept as stored (not sorted): the restored JWKS is then byte-identical,
    # so its ETag is too, and verifiers' and CDNs' cached copies stay valid across a restore.
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _parse(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_EXPORT_BYTES:
        raise InvalidInputError(f"a ring export is at most {MAX_EXPORT_BYTES} bytes")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ExportTamperedError("not a keyturn ring export: not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ExportTamperedError(f"not a keyturn ring export (format {FORMAT} expected)")
    return doc


def _record_from(d: Any) -> KeyRecord:
    if not isinstance(d, dict) or set(d) != set(_KEY_FIELDS):
        raise ExportTamperedError("a key record has missing or unknown fields")
    try:
        blob = d["sealed_private"]
        times: dict[str, float | None] = {
            f: None if d[f] is None else float(d[f]) for f in _TIME_FIELDS
        }
        rec = KeyRecord(
            kid=str(d["kid"]),
            alg=Alg(d["alg"]),
            state=KeyState(d["state"]),
            public_jwk=dict(d["public_jwk"]),
            created_at=float(d["created_at"]),
            sealed_private=b64url_decode(blob) if blob is not None else None,
            master_key_id=None if d["master_key_id"] is None else str(d["master_key_id"]),
            origin=str(d["origin"]),
            revocation_reason=None
            if d["revocation_reason"] is None
            else str(d["revocation_reason"]),
            **times,  # type: ignore[arg-type]  # exactly _TIME_FIELDS, all float | None
        )
    except (TypeError, ValueError) as exc:
        raise ExportTamperedError(f"a key record is malformed: {exc}") from None
    return rec


def import_ring(service: KeyService, data: bytes, *, actor: str) -> ImportResult:
    """Restore an exported ring as a new tenant of this store; refuses a tampered export."""
    doc = _parse(data)
    mkid = doc.get("master_key_id")
    master = next((k for k in service.sealer.keys if k.id == mkid), None)
    if master is None:
        raise MasterKeyError(
            f"the export is sealed and signed under master key {mkid}, which is not configured "
            f"(configured: {', '.join(k.id for k in service.sealer.keys)}); restore needs the "
            "master key the source used"
        )
    mac = doc.pop("mac", None)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(master, doc)):
        raise ExportTamperedError(
            "the export's integrity check failed: it was changed after export, or made under "
            "another master key with the same id"
        )
    try:
        t = doc["tenant"]
        name = check_tenant_name(str(t["name"]))
        issuer, forced = str(t["issuer"]), bool(t["policy_forced"])
        policy = Policy(**t["policy"])
        raw_keys = doc["keys"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportTamperedError(f"the export's tenant section is malformed: {exc}") from None
    if not isinstance(raw_keys, list) or not 0 < len(raw_keys) <= MAX_KEYS:
        raise ExportTamperedError(f"an export holds 1 to {MAX_KEYS} keys")
    records = [_record_from(d) for d in raw_keys]
    for rec in records:
        _check_record(rec, name, service.sealer, importing=True)
    # The ring's own invariants (one current, at most one next, kids unique) before writing.
    states = [r.state for r in records]
    if states.count(KeyState.CURRENT) != 1 or states.count(KeyState.NEXT) > 1:
        raise ExportTamperedError("an export's ring needs exactly one current and at most one next")
    if len({r.kid for r in records}) != len(records):
        raise ExportTamperedError("an export's ring lists a kid twice")
    now = service.clock.now()
    with service.store.write() as tx:
        try:
            tenant = tx.create_tenant(name, issuer, policy, forced, now)
        except TenantExistsError:
            raise TenantExistsError(
                f"tenant {name!r} already exists here: import restores into a store without it"
            ) from None
        tx.apply(tenant, Change(created=records), now)
        tx.audit(
            at=now,
            actor=actor,
            event="tenant.imported",
            tenant=name,
            details={
                "keys": len(records),
                "master_key_id": master.id,
                "exported_at": doc.get("exported_at"),
            },
        )
    service.invalidate(name)
    published = sum(1 for r in records if r.state in PUBLISHED_STATES)
    return ImportResult(name, len(records), published, master.id)
