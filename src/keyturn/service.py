"""The key service: key-ring operations as single transactions, each audited.

Key generation and sealing happen before the transaction opens, so the database lock is held
only for a few statements. Every operation re-reads the ring under the tenant lock and decides
there, so concurrent callers (CLI, API, scheduler, other replicas) serialise safely.

The service is typed against the ``KeyStore`` Protocol (``keyturn.store.interface``), and it
is the faces' only way to the data: besides the operations it has the reads they need
(``public_keys``, ``published_keys``, ``key_versions``, ``audit_records``,
``verify_audit_chain``, ``rotation_rows``, ``api_keys``). Policy changes arrive typed, as a
``PolicyChange``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from keyturn.clock import ServiceClock, SystemClock
from keyturn.errors import (
    ConcurrentChangeError,
    InvalidInputError,
    InvalidTransitionError,
    IssuerChangeError,
    KeyBackendError,
    KeyCapError,
    KeyNotFoundError,
    MalformedTokenError,
    MasterKeyError,
    TokenLifetimeError,
)
from keyturn.keys.algorithms import Alg, PrivateKey, check_key_for_alg
from keyturn.keys.backends import SOFTWARE, BackendKind, BackendSpec, KeyBackend, KeyBackends
from keyturn.keys.importing import ImportFormat, import_key
from keyturn.keys.sealing import Sealer
from keyturn.ring.issuer import check_issuer
from keyturn.ring.model import KeyRecord, KeyState, Policy, check_tenant_name
from keyturn.ring.policy import validate_policy
from keyturn.ring.policy_contract import PolicyChange
from keyturn.ring.records import AuditAnchor, AuditRecord, RotationRow, Tenant
from keyturn.ring.ring import Change, Event, Ring
from keyturn.store.interface import KeyStore, StoreTx
from keyturn.tokens.claims import MAX_JSON_DEPTH, json_too_deep
from keyturn.tokens.keyset import MAX_JWKS_KEYS, KeySet
from keyturn.tokens.signer import TokenSigner, issue_claims
from keyturn.tokens.verify import verify_token

if TYPE_CHECKING:
    from keyturn.store.apikeys import ApiKeyStore

MAX_CLAIMS_BYTES = 8 * 1024
log = logging.getLogger("keyturn.service")

RELOAD_SEALER_EVERY = 1.0  # seconds between master-key reloads prompted by an unknown id
DEFAULT_REVALIDATE_AFTER = 0.25  # seconds a prepared signer is trusted without a re-check
MAX_REASON_LENGTH = 500
RESERVED_CLAIMS = frozenset({"iat"})


@dataclass
class Outcome:
    """The result of an operation: the tenant after it, what changed, and warnings for people."""

    tenant: Tenant
    change: Change = field(default_factory=Change)
    violations: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return self.change.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant.name,
            "events": [{"event": e.event, "kid": e.kid, **e.details} for e in self.change.events],
            "warnings": self.change.warnings,
            "policy_violations_forced": self.violations,
        }


@dataclass(frozen=True)
class _Prepared:
    key_version: int
    tenant: Tenant
    signer: TokenSigner | None
    keyset: KeySet
    revoked: frozenset[str]
    algs: frozenset[Alg]
    signer_error: KeyBackendError | None = None


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidInputError("a reason is required")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInputError(f"reason longer than {MAX_REASON_LENGTH} characters")
    return reason


def _check_key_cap(ring: Ring, added: int, what: str) -> None:
    """Refuse a manual change that would publish more keys than verifiers accept.

    Past ``MAX_JWKS_KEYS`` every verifier (keyturn's and most others) refuses the whole set, so
    nothing verifies until old keys retire, hours later. More keys is never the way out of a
    full ring: revoking the keys no longer needed is.
    """
    published = len(ring.published)
    if published + added <= MAX_JWKS_KEYS:
        return
    previous = [k for k in ring.published if k.state == KeyState.PREVIOUS]
    first = min((k.retire_after or 0.0 for k in previous), default=None)
    when = f"; the first previous key retires at {first:.0f} (unix time)" if first else ""
    raise KeyCapError(
        f"refused: {what} would publish {published + added} keys in tenant {ring.tenant}'s "
        f"JWKS, more than the cap of {MAX_JWKS_KEYS} verifiers accept ({published} published, "
        f"{len(previous)} of them previous keys{when}). Revoke keys that no longer need to "
        "verify (`keyturn key revoke KID`) instead of adding more.",
        published=published,
        cap=MAX_JWKS_KEYS,
    )


class KeyService:
    """Every key-ring operation of keyturn, on one store, sealer and clock."""

    def __init__(
        self,
        store: KeyStore,
        sealer: Sealer,
        clock: ServiceClock | None = None,
        *,
        on_change: Callable[[str], None] | None = None,
        revalidate_after: float = DEFAULT_REVALIDATE_AFTER,
        backends: KeyBackends | None = None,
    ) -> None:
        self.store = store
        self.backends = backends or KeyBackends(sealer)
        self.sealer = sealer  # the software backend's, through the property below
        # Software keys are opened through the service, which reloads the master keys once
        # when a blob names one it has not loaded (see ``_open``).
        self.backends.software.open_sealed = self._open
        self.clock: ServiceClock = clock or SystemClock()
        self.on_change = on_change
        self._prepared: dict[str, _Prepared] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._api_keys: ApiKeyStore | None = None
        # Sign/verify re-check the tenant's key_version at most every ``revalidate_after``
        # seconds (one small read), so a key change made by another process is seen within
        # that time without a database round trip per token; a watcher (LISTEN/NOTIFY or
        # polling) calling ``invalidate`` makes it sooner.
        self.revalidate_after = revalidate_after
        # Called by ``sign`` with (tenant, key_version, kid) before a token leaves: a server
        # brings its served JWKS up to that version there, so it never hands out a token whose
        # kid its own JWKS lacks (its watcher may not have seen the change yet).
        self.before_sign: Callable[[str, int, str], None] | None = None
        # Reads the master keys again (the key file): a running server meets a blob sealed
        # under a master key it has not loaded after `keyturn master-key rotate` on this or
        # another machine. Rate-limited, so a truly missing key costs one read per interval.
        self.reload_sealer: Callable[[], Sealer] | None = None
        self._sealer_reloaded_at = -math.inf

    @property
    def sealer(self) -> Sealer:
        """The master keys software keys are sealed under (one owner: the software backend)."""
        return self.backends.software.sealer

    @sealer.setter
    def sealer(self, sealer: Sealer) -> None:
        self.backends.software.sealer = sealer

    # --- key material --------------------------------------------------------------------
    def backend(self, tenant: Tenant) -> KeyBackend:
        """The one place a tenant's key backend is chosen: from its record."""
        return self.backends.for_spec(tenant.key_backend)

    def _record(
        self,
        tenant: Tenant,
        alg: Alg,
        rsa_bits: int,
        *,
        key: PrivateKey | None = None,
        origin: str = "generated",
        x5c: list[str] | None = None,
        x5t: str | None = None,
    ) -> KeyRecord:
        backend = self.backend(tenant)
        if key is None:
            new = backend.generate(tenant.name, alg, rsa_bits)
        else:
            new = backend.adopt(tenant.name, alg, key, x5c=x5c, x5t=x5t)
        ref = new.ref
        return KeyRecord(
            kid=new.kid,
            alg=alg,
            state=KeyState.NEXT,
            public_jwk=new.public_jwk,
            created_at=0.0,
            sealed_private=ref.sealed_private,
            master_key_id=ref.master_key_id,
            origin=origin,
            token_object_id=ref.token_object_id,
            token_label=ref.token_label,
        )

    def _new_key(self, tenant: Tenant) -> KeyRecord:
        return self._record(tenant, tenant.policy.alg, tenant.policy.rsa_bits)

    @contextlib.contextmanager
    def _discard_on_error(self, tenant: Tenant, *recs: KeyRecord | None) -> Iterator[None]:
        """Keys made for an operation that then failed are destroyed in their token.

        Software keys need nothing (they never reached the database); a token object that no
        ring row names would otherwise stay in the token for ever.
        """
        try:
            yield
        except BaseException:
            for rec in recs:
                if rec is not None and rec.token_object_id is not None:
                    with contextlib.suppress(Exception):
                        self.backend(tenant).destroy(tenant.name, rec.kid, rec.ref)
            raise

    def _destroy_private(
        self,
        tx: StoreTx,
        tenant: Tenant,
        keys_before: list[KeyRecord],
        change: Change,
        now: float,
        actor: str,
    ) -> None:
        """Inside the transaction, as its last step: destroy the token objects of keys this
        change retires or revokes, and audit each. A token failure raises, so the transaction
        rolls back and no key state changes; destroying is idempotent, so the retry succeeds.
        A key about to become current must still have its object (a dangling next is never
        promoted)."""
        if tenant.key_backend.kind == BackendKind.SOFTWARE:
            return
        backend = self.backend(tenant)
        before = {k.kid: k for k in keys_before}
        for rec in change.updated + change.created:
            if rec.state == KeyState.CURRENT and rec.token_object_id is not None:
                backend.signer(tenant.name, rec.kid, rec.alg, rec.ref)
        doomed = [
            rec
            for rec in change.updated
            if rec.state in (KeyState.RETIRED, KeyState.REVOKED)
            and rec.token_object_id is not None
            and before.get(rec.kid) is not None
            and before[rec.kid].state not in (KeyState.RETIRED, KeyState.REVOKED)
        ]
        for rec in doomed:
            tx.audit(
                at=now,
                actor=actor,
                event="key.destroyed",
                tenant=tenant.name,
                kid=rec.kid,
                details={
                    "backend": tenant.key_backend.kind.value,
                    "token_object_id": rec.token_object_id,
                    "token_label": rec.token_label,
                    "state": rec.state.value,
                },
            )
        for rec in doomed:
            backend.destroy(tenant.name, rec.kid, rec.ref)

    # --- reads ---------------------------------------------------------------------------
    def tenant(self, name: str) -> Tenant:
        return self.store.tenant(name)

    def tenants(self) -> list[Tenant]:
        return self.store.tenants()

    def ring(self, name: str) -> tuple[Tenant, Ring]:
        tenant, keys = self.store.tenant_keys(name)
        return tenant, Ring(tenant.name, tenant.policy, keys)

    def jwks(self, name: str) -> dict[str, Any]:
        _, ring = self.ring(name)
        return jwks_document(ring)

    def public_keys(self, name: str) -> tuple[Tenant, list[KeyRecord]]:
        """The tenant and its published keys (no private material), for public documents."""
        return self.store.public_keys(name)

    def published_keys(self, tenants: list[Tenant]) -> dict[int, list[KeyRecord]]:
        """The published keys of several tenants, by tenant id, in one read (console lists)."""
        if not tenants:
            return {}
        with self.store.read() as tx:
            return tx.published_keys([t.id for t in tenants])

    def key_versions(self, since: float | None = None) -> dict[str, int]:
        """Every tenant's key version (changed since ``since`` if given): a cheap liveness read."""
        return self.store.key_versions(since)

    def audit_records(
        self,
        *,
        tenant: str | None = None,
        kid: str | None = None,
        event_name: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditRecord]:
        """Audit records matching every filter given."""
        return self.store.audit_records(
            tenant=tenant,
            kid=kid,
            event_name=event_name,
            actor=actor,
            since=since,
            until=until,
            after_id=after_id,
            limit=limit,
            newest_first=newest_first,
        )

    def verify_audit_chain(self) -> list[str]:
        """Problems in the audit hash chain; empty when intact."""
        return self.store.verify_audit_chain()

    def audit_anchor(self, count: int | None = None) -> AuditAnchor:
        """The audit trail's head hash and record count (after the first ``count`` records)."""
        return self.store.audit_anchor(count)

    def verify_audit_anchor(self, expect: AuditAnchor) -> list[str]:
        """Problems between an anchor saved earlier and the trail now: the first
        ``expect.count`` records must still be there and hash to ``expect.head`` (records
        appended since are fine)."""
        now = self.store.audit_anchor(expect.count)
        if now.count < expect.count:
            return [
                f"audit trail has {now.count} records, fewer than the {expect.count} anchored: "
                "records were deleted"
            ]
        if now.head != expect.head:
            return [
                f"audit head after {expect.count} records is {now.head}, not the anchored "
                f"{expect.head}: anchored records were changed or removed"
            ]
        return []

    def rotation_rows(self, limit: int) -> tuple[list[RotationRow], int]:
        """Rotation timing of at most ``limit`` tenants, soonest due first; and the count."""
        return self.store.rotation_rows(limit)

    def api_keys(self) -> ApiKeyStore:
        """The API keys of this service's store (one instance, so last-use stamps are shared)."""
        with self._lock:
            if self._api_keys is None:
                self._api_keys = self.store.api_keys(self.clock)
            return self._api_keys

    def close(self) -> None:
        """Release the store's connections."""
        self.store.dispose()

    # --- tenants -------------------------------------------------------------------------
    def create_tenant(
        self,
        name: str,
        *,
        issuer: str,
        policy: Policy,
        force: bool = False,
        actor: str,
        key_backend: BackendSpec = SOFTWARE,
    ) -> Outcome:
        check_tenant_name(name)
        check_issuer(issuer)
        violations = validate_policy(policy, force=force)
        self.backends.validate(key_backend)
        placeholder = Tenant(0, name, issuer, policy, force, 0, 0.0, 0.0, key_backend)
        cur = self._new_key(placeholder)
        with self._discard_on_error(placeholder, cur):
            nxt = self._new_key(placeholder)
        now = self.clock.now()
        with self._discard_on_error(placeholder, cur, nxt), self.store.write() as tx:
            tenant = tx.create_tenant(name, issuer, policy, bool(violations), now, key_backend)
            ring = Ring(name, policy, [])
            change = ring.bootstrap(now, cur, nxt)
            tx.apply(tenant, change, now)
            tx.audit(
                at=now,
                actor=actor,
                event="tenant.created",
                tenant=name,
                details={"issuer": issuer, "policy": policy.to_dict()}
                | (
                    {"key_backend": key_backend.to_dict()}
                    if key_backend.kind != BackendKind.SOFTWARE
                    else {}
                ),
            )
            if violations:
                tx.audit(
                    at=now,
                    actor=actor,
                    event="policy.forced",
                    tenant=name,
                    details={"violations": violations},
                )
            tx.audit_events(change.events, at=now, actor=actor, tenant=name, reason=None)
            tenant = tx.tenant(name)
        self._changed(name)
        return Outcome(tenant, change, violations)

    def set_policy(
        self,
        name: str,
        *,
        actor: str,
        force: bool = False,
        alg: Alg | None = None,
        rotation_period: float | None = None,
        token_ttl: float | None = None,
        jwks_max_age: float | None = None,
        clock_skew: float | None = None,
        rsa_bits: int | None = None,
        **unknown: object,
    ) -> Outcome:
        """``change_policy`` with the fields as keywords (``None``: unchanged); any other keyword
        is an invalid-input error naming it, as from the API."""
        change = PolicyChange.from_mapping(
            {
                "alg": alg,
                "rotation_period": rotation_period,
                "token_ttl": token_ttl,
                "jwks_max_age": jwks_max_age,
                "clock_skew": clock_skew,
                "rsa_bits": rsa_bits,
                **unknown,
            }
        )
        return self.change_policy(name, change, actor=actor, force=force)

    def change_issuer(
        self, name: str, issuer: str, *, actor: str, force: bool = False, reason: str | None = None
    ) -> Outcome:
        """Give a tenant another issuer (audited). Tokens already issued carry the old ``iss``
        and fail verifiers that expect the new one, so this is refused unless ``force``."""
        check_issuer(issuer)
        if reason is not None:
            reason = _check_reason(reason)
        now = self.clock.now()
        with self.store.write() as tx:
            tenant = tx.tenant(name)
            if tenant.issuer == issuer:
                return Outcome(
                    tenant, Change(warnings=[f"the issuer of {name} is already {issuer}"])
                )
            if not force:
                raise IssuerChangeError(
                    f"tenant {name} has issuer {tenant.issuer}: tokens it issued carry that "
                    f"issuer and fail verifiers expecting {issuer} until they expire (at most "
                    f"the token ttl); give force (--force) to change it anyway"
                )
            old = tenant.issuer
            tx.update_issuer(tenant, issuer, now)
            tx.audit(
                at=now,
                actor=actor,
                event="tenant.issuer_changed",
                tenant=name,
                reason=reason,
                details={"old": old, "new": issuer, "forced": True},
            )
            tenant = tx.tenant(name)
        self._changed(name)
        change = Change(events=[Event("tenant.issuer_changed", None, {"old": old, "new": issuer})])
        return Outcome(tenant, change)

    def change_policy(
        self, name: str, update: PolicyChange, *, actor: str, force: bool = False
    ) -> Outcome:
        """Change policy fields; refuse unsafe ones; keep previous keys the new retention."""
        current = self.store.tenant(name)
        policy = update.applied_to(current.policy)
        violations = validate_policy(policy, force=force)
        new_next = None
        if (policy.alg, policy.rsa_bits) != (current.policy.alg, current.policy.rsa_bits):
            new_next = self._record(current, policy.alg, policy.rsa_bits)
        now = self.clock.now()
        with self._discard_on_error(current, new_next), self.store.write() as tx:
            tenant = tx.tenant(name)
            if tenant.policy != current.policy:
                raise ConcurrentChangeError(f"the policy of {name} changed meanwhile; try again")
            ring = Ring(name, policy, tx.keys(tenant))
            keys_before = list(ring.keys)  # the ring's operations update it in place
            tx.update_policy(tenant, policy, bool(violations), now)
            tx.audit(
                at=now,
                actor=actor,
                event="policy.changed",
                tenant=name,
                details={"old": current.policy.to_dict(), "new": policy.to_dict()},
            )
            if violations:
                tx.audit(
                    at=now,
                    actor=actor,
                    event="policy.forced",
                    tenant=name,
                    details={"violations": violations},
                )
            change = ring.extend_retention(now)
            if new_next is not None:
                # A new algorithm or key size reaches signing through the next key, so it
                # is pre-published like any other: replace next now, switch at rotation.
                change2 = ring.place_imported(now, new_next, KeyState.NEXT, None, replace_next=True)
                change.updated += change2.updated
                change.created += change2.created
                change.events += [e for e in change2.events if e.event != "key.imported"]
                change.events.append(Event("key.created", new_next.kid, {"state": "next"}))
            tx.apply(tenant, change, now)
            tx.audit_events(change.events, at=now, actor=actor, tenant=name, reason=None)
            self._destroy_private(tx, tenant, keys_before, change, now, actor)
            tenant = tx.tenant(name)
        self._changed(name)
        return Outcome(tenant, change, violations)

    # --- transitions ---------------------------------------------------------------------
    def _transition(
        self,
        name: str,
        actor: str,
        reason: str | None,
        fn: Callable[[StoreTx, Tenant, Ring, float], Change],
        fresh: tuple[Tenant, list[KeyRecord | None]] | None = None,
    ) -> Outcome:
        now = self.clock.now()
        discard = (
            self._discard_on_error(fresh[0], *fresh[1])
            if fresh is not None
            else contextlib.nullcontext()
        )
        with discard, self.store.write() as tx:
            tenant = tx.tenant(name)
            ring = Ring(name, tenant.policy, tx.keys(tenant))
            keys_before = list(ring.keys)  # the ring's operations update it in place
            change = fn(tx, tenant, ring, now)
            tx.apply(tenant, change, now)
            tx.audit_events(change.events, at=now, actor=actor, tenant=name, reason=reason)
            self._destroy_private(tx, tenant, keys_before, change, now, actor)
            tenant = tx.tenant(name)
        if not change.empty:
            self._changed(name)
        return Outcome(tenant, change)

    def rotate(
        self, name: str, *, actor: str, reason: str | None = None, if_current: str | None = None
    ) -> Outcome:
        """Rotate now. With ``if_current``, only if that kid still signs (compare-and-swap)."""
        tenant = self.store.tenant(name)
        new_next = self._new_key(tenant)

        def fn(tx: StoreTx, t: Tenant, ring: Ring, now: float) -> Change:
            cur = ring.current
            assert cur is not None
            if if_current is not None and cur.kid != if_current:
                raise ConcurrentChangeError(
                    f"not rotated: the current key is {cur.kid}, not {if_current} "
                    "(another rotation happened first)"
                )
            if (t.policy.alg, t.policy.rsa_bits) != (tenant.policy.alg, tenant.policy.rsa_bits):
                raise ConcurrentChangeError("the policy changed meanwhile; try again")
            _check_key_cap(ring, 1, "rotating now")
            return ring.rotate(now, new_next)

        return self._transition(name, actor, reason, fn, (tenant, [new_next]))

    def revoke(self, name: str, kid: str, *, reason: str, actor: str) -> Outcome:
        """Revoke ``kid``; revoking the current key promotes next in the same transaction."""
        reason = _check_reason(reason)
        tenant, ring = self.ring(name)
        rec = ring.get(kid)
        replacement = (
            self._new_key(tenant) if rec.state in (KeyState.CURRENT, KeyState.NEXT) else None
        )

        def fn(tx: StoreTx, t: Tenant, ring: Ring, now: float) -> Change:
            return ring.revoke(kid, now, reason, replacement)

        return self._transition(name, actor, reason, fn, (tenant, [replacement]))

    def rotate_and_revoke(self, name: str, *, reason: str, actor: str) -> Outcome:
        """The compromised-key answer: revoke the current key, next signs at once."""
        _, ring = self.ring(name)
        cur = ring.current
        assert cur is not None
        return self.revoke(name, cur.kid, reason=reason, actor=actor)

    def revoke_all(self, name: str, *, reason: str, actor: str) -> Outcome:
        """The leaked-store answer: revoke every published key; fresh current and next."""
        reason = _check_reason(reason)
        tenant = self.store.tenant(name)
        new_cur = self._new_key(tenant)
        with self._discard_on_error(tenant, new_cur):
            new_next = self._new_key(tenant)

        def fn(tx: StoreTx, t: Tenant, ring: Ring, now: float) -> Change:
            return ring.revoke_all(now, reason, new_cur, new_next)

        return self._transition(name, actor, reason, fn, (tenant, [new_cur, new_next]))

    def import_key(
        self,
        name: str,
        data: bytes,
        *,
        actor: str,
        fmt: ImportFormat | None = None,
        password: bytes | None = None,
        as_state: KeyState = KeyState.NEXT,
        replace_next: bool = False,
    ) -> Outcome:
        """Import a private key into the ring (as next by default: pre-published like any key).
        An existing next key is replaced (retired, private key destroyed) only with
        ``replace_next``."""
        tenant = self.store.tenant(name)
        imported = import_key(data, fmt=fmt, password=password, alg=None)
        # The imported key must serve the tenant's algorithm: one tenant signs with one alg.
        check_key_for_alg(imported.private_key, tenant.policy.alg)
        rec = self._record(
            tenant,
            tenant.policy.alg,
            tenant.policy.rsa_bits,
            key=imported.private_key,
            origin="imported",
            x5c=imported.x5c,
            x5t=imported.x5t_s256,
        )

        def fn(tx: StoreTx, t: Tenant, ring: Ring, now: float) -> Change:
            if as_state != KeyState.NEXT:  # an imported next replaces the next key
                _check_key_cap(ring, 1, f"importing a key as {as_state.value}")
            return ring.place_imported(now, rec, as_state, None, replace_next=replace_next)

        return self._transition(name, actor, None, fn)

    def retire_due(self, name: str, *, actor: str) -> Outcome:
        def fn(tx: StoreTx, t: Tenant, ring: Ring, now: float) -> Change:
            return ring.retire_due(now)

        return self._transition(name, actor, None, fn)

    def sweep_tenant(self, name: str, *, actor: str = "scheduler") -> Outcome:
        """Rotate if the period has passed and retire expired previous keys, in one transaction."""
        tenant, ring = self.ring(name)
        now = self.clock.now()
        new_next = self._new_key(tenant) if ring.rotation_due(now) else None

        def fn(tx: StoreTx, t: Tenant, ring: Ring, now: float) -> Change:
            return ring.sweep(now, new_next)

        return self._transition(name, actor, None, fn, (tenant, [new_next]))

    def sweep(self, *, actor: str = "scheduler", batch: int = 200) -> list[Outcome]:
        """One pass over every tenant with something due (``keyturn rotate-due``).

        Tenants are handled in batches: candidates are read without locks, their new keys are
        generated outside any transaction, then one transaction per batch locks the rows
        (skipping rows another replica holds), re-checks what is due under the lock, and writes
        every change with a few bulk statements. Of several sweepers, exactly one rotates a
        tenant; a crash rolls back the whole batch.
        """
        results: list[Outcome] = []
        with self.store.read() as tx:
            due = tx.due_tenant_ids(self.clock.now())
        backend_error: KeyBackendError | None = None
        for start in range(0, len(due), batch):
            chunk = dict(due[start : start + batch])
            now = self.clock.now()
            with self.store.read() as tx:
                candidates = [(t, chunk[t.id]) for t in tx.tenants_by_id(list(chunk))]
            # Token-backed tenants go one transaction each: destroying a retired key's object
            # is part of its transaction, and one absent token must not hold back the batch.
            for t in [t for t, _ in candidates if t.key_backend.kind != BackendKind.SOFTWARE]:
                try:
                    out = self.sweep_tenant(t.name, actor=actor)
                except KeyBackendError as exc:
                    backend_error = backend_error or exc
                    continue
                if not out.change.empty:
                    results.append(out)
            candidates = [
                (t, d) for t, d in candidates if t.key_backend.kind == BackendKind.SOFTWARE
            ]
            fresh = {t.id: self._new_key(t) for t, rotation_due in candidates if rotation_due}
            with self.store.write() as tx:
                locked = tx.lock_tenants([t.id for t, _ in candidates])
                keys = tx.published_keys([t.id for t in locked])
                done: list[tuple[Tenant, Change]] = []
                for t in locked:
                    change = Ring(t.name, t.policy, keys[t.id]).sweep(now, fresh.get(t.id))
                    if not change.empty:
                        done.append((t, change))
                tx.apply_many(done, now)
                tx.audit_many(
                    [
                        {
                            "at": now,
                            "actor": actor,
                            "scope": t.name,
                            "tenant": t.name,
                            "kid": ev.kid,
                            "event": ev.event,
                            "reason": None,
                            "details": ev.details,
                        }
                        for t, change in done
                        for ev in change.events
                    ]
                )
            for t, change in done:
                self._changed(t.name)
                results.append(Outcome(t, change))
        if backend_error is not None:
            # The other tenants were swept; the failure is still the caller's to report.
            raise backend_error
        return results

    # --- master key ----------------------------------------------------------------------
    def reseal_all(self, sealer: Sealer, *, actor: str) -> int:
        """Re-seal every private key under ``sealer``'s active master key, in one transaction."""
        now = self.clock.now()
        count = 0
        with self.store.write() as tx:
            for tenant_id, tenant_name, kid, blob, mkid in tx.sealed_keys():
                if mkid == sealer.active_id:
                    continue
                key = sealer.open(blob, mkid, tenant_name, kid)
                new_blob, new_id = sealer.seal(key, tenant_name, kid)
                tx.reseal(tenant_id, kid, new_blob, new_id)
                count += 1
            tx.audit(
                at=now,
                actor=actor,
                event="master_key.rotated",
                details={"active": sealer.active_id, "resealed": count},
            )
        self.sealer = sealer
        with self._lock:
            self._prepared.clear()
        return count

    # --- tokens --------------------------------------------------------------------------
    def invalidate(self, name: str | None = None) -> None:
        """Forget prepared signing/verifying state (one tenant, or all)."""
        with self._lock:
            if name is None:
                self._prepared.clear()
                self._checked.clear()
            else:
                self._prepared.pop(name, None)
                self._checked.pop(name, None)

    def _changed(self, name: str) -> None:
        self.invalidate(name)
        if self.on_change is not None:
            self.on_change(name)

    def warm_signer(self, name: str) -> tuple[Alg, int, str] | None:
        """(alg, key_version, kid) of the signer ``sign(name, ...)`` would use if preparing it
        needs no store read right now (prepared and trusted), else None. A read only: callers
        on an event loop sign inline when this (and ``before_sign``'s own check) says no read
        is due, and in a thread otherwise."""
        cached = self._prepared.get(name)
        if cached is None or cached.signer is None:
            return None
        if self.clock.monotonic() - self._checked.get(name, -math.inf) >= self.revalidate_after:
            return None
        return cached.signer.alg, cached.key_version, cached.signer.kid

    def warm_alg(self, name: str) -> Alg | None:
        """The algorithm of :meth:`warm_signer`, or None."""
        warm = self.warm_signer(name)
        return None if warm is None else warm[0]

    def recheck(self, name: str) -> None:
        """Re-check a prepared tenant's key_version now, ahead of ``revalidate_after`` (one
        small read; a changed or unprepared tenant is prepared afresh). For a server that
        keeps its signers warm off the request path; ``sign`` does not call it."""
        cached = self._prepared.get(name)
        if cached is not None:
            checked = self.clock.monotonic()
            if self.store.tenant(name).key_version == cached.key_version:
                with self._lock:
                    if self._prepared.get(name) is cached:  # not invalidated meanwhile
                        self._checked[name] = checked
                return
            self.invalidate(name)
        self.prepared(name)

    def _open(self, blob: bytes, master_key_id: str, name: str, kid: str) -> PrivateKey:
        """Unseal, reloading the master keys once if the blob names one not loaded yet."""
        if master_key_id not in self.sealer.ids and self.reload_sealer is not None:
            self.refresh_sealer()
        return self.sealer.open(blob, master_key_id, name, kid)

    def refresh_sealer(self, *, min_interval: float = RELOAD_SEALER_EVERY) -> bool:
        """Read the master keys again (at most every ``min_interval`` s); True if they changed.

        A failed read (file unreadable, mangled) keeps the keys held: signing goes on with them.
        """
        reload = self.reload_sealer
        now = self.clock.monotonic()
        if reload is None or now - self._sealer_reloaded_at < min_interval:
            return False
        self._sealer_reloaded_at = now
        try:
            fresh = reload()
        except MasterKeyError as exc:
            log.warning("master keys not reloaded: %s", exc.detail)
            return False
        if fresh.ids == self.sealer.ids and fresh.active_id == self.sealer.active_id:
            return False
        # Keys held but gone from the file are kept: blobs may still be sealed under them
        # (another machine's file, an edit in progress), and signing must go on with them.
        kept = [k for k in self.sealer.keys if k.id not in fresh.ids]
        log.info("master keys reloaded: active %s", fresh.active_id)
        self.sealer = Sealer([*fresh.keys, *kept])
        return True

    def prepared(self, name: str) -> _Prepared:
        """Prepared signer and key set for a tenant, rebuilt only when its keys change."""
        cached = self._prepared.get(name)
        if cached is not None:
            checked = self.clock.monotonic()
            if checked - self._checked.get(name, -math.inf) < self.revalidate_after:
                return cached
            if self.store.tenant(name).key_version == cached.key_version:
                self._checked[name] = checked
                return cached
        checked = self.clock.monotonic()
        tenant, ring = self.ring(name)
        cur = ring.current
        signer = None
        signer_error = None
        if cur is not None and cur.has_private:
            try:
                raw = self.backend(tenant).signer(name, cur.kid, cur.alg, cur.ref)
                signer = TokenSigner(raw, cur.alg, cur.kid)
            except KeyBackendError as exc:
                # Verifying needs no private key: keep serving it; signing reports this.
                signer_error = exc
        doc = jwks_document(ring)
        prepared = _Prepared(
            key_version=tenant.key_version,
            tenant=tenant,
            signer=signer,
            # The ring's own keys, however many: signing never fails because of JWKS size.
            keyset=KeySet.from_jwks(doc, max_keys=None),
            revoked=frozenset(k.kid for k in ring.keys if k.state == KeyState.REVOKED),
            algs=frozenset(k.alg for k in ring.published),
            signer_error=signer_error,
        )
        with self._lock:
            self._prepared[name] = prepared
            self._checked[name] = checked
        return prepared

    def _prepared_for_signing(self, name: str) -> _Prepared:
        """The prepared signer, once ``before_sign`` has seen its kid published.

        A prepared signer at most ``revalidate_after`` old may hold a key revoked meanwhile;
        the barrier then refuses it and the ring is read again, once.
        """
        for attempt in (1, 2):
            p = self.prepared(name)
            if p.signer is None and p.signer_error is not None:
                # The token may be back: try once more before reporting the backend's error.
                self.invalidate(name)
                p = self.prepared(name)
                if p.signer_error is not None:
                    raise p.signer_error
            if p.signer is None:
                raise InvalidTransitionError(
                    f"tenant {name} has no current key with private material"
                )
            barrier = self.before_sign
            if barrier is None:
                return p
            try:
                barrier(name, p.key_version, p.signer.kid)
            except ConcurrentChangeError:
                if attempt == 2:
                    raise
                self.invalidate(name)
                continue
            return p
        raise AssertionError("unreachable")  # pragma: no cover

    def prepare_signing(self, name: str) -> _Prepared:
        """The prepared signer past the published-kid barrier: what ``sign(prepared=...)``
        takes, fetched before a transaction opens (the barrier may read the store)."""
        return self._prepared_for_signing(name)

    def sign(
        self,
        name: str,
        claims: dict[str, Any],
        *,
        ttl: float | None = None,
        prepared: _Prepared | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign claims with the current key; returns (token, full claims).

        ``prepared``: from :meth:`prepare_signing` beforehand, so a caller inside an open
        transaction (the session service) signs without a second store connection.
        """
        if not isinstance(claims, dict):
            raise InvalidInputError("claims must be a JSON object")
        if len(orjson.dumps(claims)) > MAX_CLAIMS_BYTES:
            raise InvalidInputError(f"claims larger than {MAX_CLAIMS_BYTES} bytes")
        p = (
            prepared
            if prepared is not None and prepared.tenant.name == name
            else self._prepared_for_signing(name)
        )
        if p.signer is None:
            raise InvalidTransitionError(f"tenant {name} has no current key with private material")
        policy = p.tenant.policy
        bad = RESERVED_CLAIMS & claims.keys()
        if bad:
            raise InvalidInputError(f"claims {sorted(bad)} are set by keyturn, not by the caller")
        if "iss" in claims and claims["iss"] != p.tenant.issuer:
            raise InvalidInputError(f"claim 'iss' must be this tenant's issuer {p.tenant.issuer}")
        now = int(self.clock.now())
        if "exp" in claims:
            exp = claims["exp"]
            if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
                raise InvalidInputError("claim 'exp' must be a number")
            lifetime = exp - now
        else:
            lifetime = policy.token_ttl if ttl is None else ttl
        if not math.isfinite(lifetime) or lifetime <= 0:
            raise InvalidInputError("token lifetime must be positive")
        if lifetime > policy.token_ttl:
            raise TokenLifetimeError(
                f"token lifetime {lifetime:.0f}s exceeds the tenant's maximum T={policy.token_ttl:.0f}s"
            )
        nbf = claims.get("nbf")
        if nbf is not None and (
            isinstance(nbf, bool)
            or not isinstance(nbf, int | float)
            or not math.isfinite(nbf)
            or not now - policy.token_ttl <= nbf < now + lifetime
        ):
            raise InvalidInputError(
                "claim 'nbf' must be a number between now - T and the token's expiry"
            )
        full = issue_claims(
            {k: v for k, v in claims.items() if k not in ("exp", "nbf")},
            issuer=p.tenant.issuer,
            now=now,
            ttl=int(lifetime),
            not_before=int(nbf) if nbf is not None else None,
        )
        return p.signer.sign(full), full

    def verify(
        self, name: str, token: str, *, audience: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """Verify against this tenant's published keys; returns (claims, kid)."""
        p = self.prepared(name)
        claims, parsed = verify_token(
            token,
            p.keyset,
            algorithms=p.algs,
            now=self.clock.now(),
            leeway=p.tenant.policy.clock_skew,
            issuer=p.tenant.issuer,
            audience=audience,
            revoked=p.revoked,
        )
        if json_too_deep(claims):
            # Verified, but neither the API nor the command line could print it.
            raise MalformedTokenError(f"claims nested deeper than {MAX_JSON_DEPTH} levels")
        return claims, parsed.kid

    def check_key_backends(self) -> None:
        """Raise the first key-backend failure: every token answers and holds each tenant's
        current key (readiness). Software tenants need no check."""
        checked: set[int] = set()
        for tenant in self.store.tenants():
            if tenant.key_backend.kind == BackendKind.SOFTWARE:
                continue
            backend = self.backend(tenant)
            if id(backend) not in checked:
                backend.check()
                checked.add(id(backend))
            _, ring = self.ring(tenant.name)
            cur = ring.current
            if cur is not None and cur.has_private:
                backend.signer(tenant.name, cur.kid, cur.alg, cur.ref)

    def find_key(self, name: str, kid: str) -> KeyRecord:
        _, ring = self.ring(name)
        for k in ring.keys:
            if k.kid == kid:
                return k
        raise KeyNotFoundError(f"tenant {name} has no key {kid}")


def jwks_document(ring: Ring) -> dict[str, Any]:
    """The public JWKS: next, current and unretired previous keys; never a private member."""
    return {"keys": [dict(k.public_jwk) for k in ring.published]}
