"""Key-ring transitions as pure functions over records: the store persists what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keyturn.errors import InvalidTransitionError, KeyNotFoundError
from keyturn.ring.model import KeyRecord, KeyState, Policy
from keyturn.ring.policy import fmt_duration
from keyturn.ring.policy_contract import next_rotation_at, prepublication_margin


@dataclass(frozen=True)
class Event:
    """One audited key event produced by a transition."""

    event: str
    kid: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    """What a transition did: records to update, records to insert, events and warnings."""

    updated: list[KeyRecord] = field(default_factory=list)
    created: list[KeyRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.updated or self.created)


class RingInvariantError(AssertionError):
    """A ring broke an invariant: a bug, never a user error."""


def _destroy(rec: KeyRecord, **changes: Any) -> KeyRecord:
    # Private material is dropped from the record; the store overwrites the column with NULL.
    return rec.evolve(sealed_private=None, master_key_id=None, **changes)


@dataclass
class Ring:
    """All keys of one tenant, with the operations of DESIGN.md section 2."""

    tenant: str
    policy: Policy
    keys: list[KeyRecord]

    # --- views -------------------------------------------------------------------------
    def by_state(self, state: KeyState) -> list[KeyRecord]:
        return [k for k in self.keys if k.state == state]

    @property
    def current(self) -> KeyRecord | None:
        cur = self.by_state(KeyState.CURRENT)
        return cur[0] if cur else None

    @property
    def next(self) -> KeyRecord | None:
        nxt = self.by_state(KeyState.NEXT)
        return nxt[0] if nxt else None

    @property
    def published(self) -> list[KeyRecord]:
        """Keys in the JWKS: next, current, previous; newest first (current first)."""
        order = {KeyState.CURRENT: 0, KeyState.NEXT: 1, KeyState.PREVIOUS: 2}
        pub = [k for k in self.keys if k.published]
        return sorted(pub, key=lambda k: (order[k.state], -k.created_at))

    def get(self, kid: str) -> KeyRecord:
        for k in self.keys:
            if k.kid == kid:
                return k
        raise KeyNotFoundError(f"tenant {self.tenant} has no key {kid}")

    def check_invariants(self) -> None:
        """Exactly one current, at most one next, unique kids, consistent timestamps."""
        cur = self.by_state(KeyState.CURRENT)
        if len(cur) != 1:
            raise RingInvariantError(f"{self.tenant}: {len(cur)} current keys")
        if len(self.by_state(KeyState.NEXT)) > 1:
            raise RingInvariantError(f"{self.tenant}: more than one next key")
        kids = [k.kid for k in self.keys]
        if len(kids) != len(set(kids)):
            raise RingInvariantError(f"{self.tenant}: duplicate kid")
        for k in self.keys:
            if k.state == KeyState.PREVIOUS and (
                k.deactivated_at is None or k.retire_after is None
            ):
                raise RingInvariantError(f"{k.kid}: previous key without retire_after")
            if k.state in (KeyState.RETIRED, KeyState.REVOKED) and k.sealed_private is not None:
                raise RingInvariantError(f"{k.kid}: {k.state} key still holds private material")
            if k.state == KeyState.CURRENT and not k.has_private:
                raise RingInvariantError(f"{k.kid}: current key without private material")

    # --- helpers -----------------------------------------------------------------------
    def _apply(self, change: Change) -> Change:
        by_kid = {r.kid: r for r in change.updated}
        self.keys = [by_kid.get(k.kid, k) for k in self.keys] + list(change.created)
        self.check_invariants()
        return change

    def _prepublication_warning(self, nxt: KeyRecord, now: float, what: str) -> str | None:
        age = now - nxt.created_at
        need = self.policy.prepublication
        margin = prepublication_margin(nxt.created_at, now, need)
        if margin >= 0:
            return None
        gap = -margin
        return (
            f"{what}: key {nxt.kid} has been published for only {fmt_duration(age)}, less than "
            f"the {fmt_duration(need)} verifier caches may hold the old JWKS (max-age + skew). "
            f"Verifiers that do not refresh on an unknown kid may reject new tokens for up to "
            f"{fmt_duration(gap)}."
        )

    def _demote_current(self, cur: KeyRecord, now: float) -> KeyRecord:
        return cur.evolve(
            state=KeyState.PREVIOUS,
            deactivated_at=now,
            retire_after=now + self.policy.retention,
        )

    # --- transitions -------------------------------------------------------------------
    def bootstrap(self, now: float, current: KeyRecord, nxt: KeyRecord) -> Change:
        """A new tenant: its first current and next keys."""
        if self.keys:
            raise InvalidTransitionError(f"tenant {self.tenant} already has keys")
        change = Change(
            created=[
                current.evolve(state=KeyState.CURRENT, created_at=now, activated_at=now),
                nxt.evolve(state=KeyState.NEXT, created_at=now),
            ],
            events=[
                Event("key.created", current.kid, {"state": "current"}),
                Event("key.created", nxt.kid, {"state": "next"}),
            ],
        )
        return self._apply(change)

    def rotate(self, now: float, new_next: KeyRecord) -> Change:
        """next -> current, current -> previous, ``new_next`` -> next."""
        cur, nxt = self.current, self.next
        assert cur is not None
        change = Change()
        if nxt is None:
            # Only reachable from a ring damaged by hand; promote the new key directly.
            promoted = new_next.evolve(state=KeyState.CURRENT, created_at=now, activated_at=now)
            change.created.append(promoted)
            change.warnings.append("no next key existed: the new key signs without pre-publication")
        else:
            warning = self._prepublication_warning(nxt, now, "early rotation")
            if warning:
                change.warnings.append(warning)
            change.updated.append(nxt.evolve(state=KeyState.CURRENT, activated_at=now))
            change.created.append(new_next.evolve(state=KeyState.NEXT, created_at=now))
        demoted = self._demote_current(cur, now)
        change.updated.append(demoted)
        new_cur = change.updated[0] if nxt is not None else change.created[0]
        change.events.append(
            Event(
                "key.rotated",
                new_cur.kid,
                {"previous": cur.kid, "next": new_next.kid, "retire_after": demoted.retire_after},
            )
        )
        return self._apply(change)

    def revoke(self, kid: str, now: float, reason: str, new_next: KeyRecord | None) -> Change:
        """Unpublish ``kid`` at once. Revoking current promotes next (rotate-and-revoke)."""
        rec = self.get(kid)
        if rec.state == KeyState.REVOKED:
            raise InvalidTransitionError(f"key {kid} is already revoked")
        if rec.state == KeyState.RETIRED:
            raise InvalidTransitionError(f"key {kid} is retired: it is no longer published")
        change = Change()
        revoked = _destroy(rec, state=KeyState.REVOKED, revoked_at=now, revocation_reason=reason)
        details: dict[str, Any] = {"reason": reason, "was": rec.state.value}
        if rec.state == KeyState.CURRENT:
            nxt = self.next
            if nxt is None or new_next is None:
                raise InvalidTransitionError("revoking the current key needs a next key to promote")
            warning = self._prepublication_warning(nxt, now, "rotate-and-revoke")
            if warning:
                change.warnings.append(warning)
            change.updated += [revoked, nxt.evolve(state=KeyState.CURRENT, activated_at=now)]
            change.created.append(new_next.evolve(state=KeyState.NEXT, created_at=now))
            details.update(promoted=nxt.kid, next=new_next.kid)
            change.warnings.append(
                f"tokens signed by {kid} in the last {fmt_duration(self.policy.token_ttl)} "
                "are rejected from now on: their holders must get new tokens"
            )
        elif rec.state == KeyState.NEXT:
            if new_next is None:
                raise InvalidTransitionError("revoking the next key needs a replacement")
            change.updated.append(revoked)
            change.created.append(new_next.evolve(state=KeyState.NEXT, created_at=now))
            details.update(next=new_next.kid)
        else:  # previous
            assert rec.retire_after is not None
            remaining = rec.retire_after - now
            change.updated.append(revoked)
            if remaining > 0:
                change.warnings.append(
                    f"key {kid} would have stayed published {fmt_duration(remaining)} more; "
                    "tokens it signed that are still live are rejected from now on"
                )
        change.events.append(Event("key.revoked", kid, details))
        return self._apply(change)

    def revoke_all(
        self, now: float, reason: str, new_current: KeyRecord, new_next: KeyRecord
    ) -> Change:
        """A leaked store: revoke every published key, create a fresh current and next."""
        change = Change()
        for rec in self.published:
            change.updated.append(
                _destroy(rec, state=KeyState.REVOKED, revoked_at=now, revocation_reason=reason)
            )
            change.events.append(
                Event(
                    "key.revoked", rec.kid, {"reason": reason, "was": rec.state.value, "all": True}
                )
            )
        change.created += [
            new_current.evolve(state=KeyState.CURRENT, created_at=now, activated_at=now),
            new_next.evolve(state=KeyState.NEXT, created_at=now),
        ]
        change.events.append(
            Event("key.replaced_all", new_current.kid, {"next": new_next.kid, "reason": reason})
        )
        change.warnings.append(
            f"every published key was revoked and {new_current.kid} signs at once, with no "
            f"pre-publication: verifiers that do not refresh on an unknown kid will reject new "
            f"tokens until their cached JWKS expires, up to "
            f"{fmt_duration(self.policy.prepublication)} (max-age + skew)"
        )
        return self._apply(change)

    def retire_due(self, now: float) -> Change:
        """Unpublish previous keys whose ``retire_after`` has passed; destroy their private keys."""
        change = Change()
        for rec in self.by_state(KeyState.PREVIOUS):
            assert rec.retire_after is not None
            if rec.retire_after <= now:
                change.updated.append(_destroy(rec, state=KeyState.RETIRED, retired_at=now))
                change.events.append(
                    Event("key.retired", rec.kid, {"retire_after": rec.retire_after})
                )
        return self._apply(change) if not change.empty else change

    def sweep(self, now: float, new_next: KeyRecord | None) -> Change:
        """What the scheduler does: retire expired previous keys, then rotate if the period has
        passed and a new key (made before the lock was taken) is at hand.

        Called under the tenant lock, so the due check here is the one that counts: of several
        sweepers, exactly one rotates. A key made for another algorithm (the policy changed in
        between) is not used; the next sweep makes a fresh one.
        """
        change = self.retire_due(now)
        if new_next is None or new_next.alg != self.policy.alg or not self.rotation_due(now):
            return change
        rot = self.rotate(now, new_next)
        by_kid = {r.kid: r for r in change.updated}
        by_kid.update({r.kid: r for r in rot.updated})
        return Change(
            updated=list(by_kid.values()),
            created=change.created + rot.created,
            events=change.events + rot.events,
            warnings=change.warnings + rot.warnings,
        )

    def rotation_due(self, now: float) -> bool:
        """Whether the scheduler rotates now: never with automatic rotation off."""
        if not self.policy.auto_rotate:
            return False
        cur = self.current
        assert cur is not None and cur.activated_at is not None
        return now >= next_rotation_at(cur.activated_at, self.policy.rotation_period)

    def extend_retention(self, now: float) -> Change:
        """After a policy change, keep every previous key at least the new retention.

        Retention is never shortened: removing a key early is only possible by revoking it.
        """
        change = Change()
        for rec in self.by_state(KeyState.PREVIOUS):
            assert rec.deactivated_at is not None and rec.retire_after is not None
            wanted = rec.deactivated_at + self.policy.retention
            if wanted > rec.retire_after:
                change.updated.append(rec.evolve(retire_after=wanted))
                change.events.append(
                    Event("key.retention_extended", rec.kid, {"retire_after": wanted})
                )
        return self._apply(change) if not change.empty else change

    def place_imported(
        self,
        now: float,
        rec: KeyRecord,
        as_state: KeyState,
        new_next: KeyRecord | None,
        *,
        replace_next: bool = False,
    ) -> Change:
        """Put an imported key into the ring as next (default), current, or previous.

        As next, it replaces the existing next key, which is retired and whose private key is
        destroyed: refused unless ``replace_next``.
        """
        if any(k.kid == rec.kid for k in self.keys):
            raise InvalidTransitionError(f"key {rec.kid} is already in tenant {self.tenant}")
        change = Change()
        if as_state == KeyState.NEXT:
            old = self.next
            if old is not None and not replace_next:
                raise InvalidTransitionError(
                    f"tenant {self.tenant} already has a next key ({old.kid}, {old.origin}): "
                    "importing as next retires it and destroys its private key; pass "
                    "replace_next (--replace-next) to do that"
                )
            if old is not None:
                # The replaced next never signed: it can go at once.
                change.updated.append(_destroy(old, state=KeyState.RETIRED, retired_at=now))
                change.events.append(Event("key.retired", old.kid, {"replaced_by": rec.kid}))
                change.warnings.append(
                    f"next key {old.kid} was retired and its private key destroyed "
                    f"(replaced by {rec.kid})"
                )
            change.created.append(rec.evolve(state=KeyState.NEXT, created_at=now))
        elif as_state == KeyState.CURRENT:
            cur = self.current
            assert cur is not None
            change.updated.append(self._demote_current(cur, now))
            change.created.append(
                rec.evolve(state=KeyState.CURRENT, created_at=now, activated_at=now)
            )
            change.warnings.append(
                f"imported key {rec.kid} signs at once, with no pre-publication: verifiers that do "
                f"not refresh on an unknown kid may reject new tokens for up to "
                f"{fmt_duration(self.policy.prepublication)}"
            )
        elif as_state == KeyState.PREVIOUS:
            # A key an older system signed with: publish it so its live tokens keep verifying.
            change.created.append(
                _destroy(
                    rec,
                    state=KeyState.PREVIOUS,
                    created_at=now,
                    deactivated_at=now,
                    retire_after=now + self.policy.retention,
                )
            )
        else:
            raise InvalidTransitionError(f"cannot import a key as {as_state}")
        change.events.append(Event("key.imported", rec.kid, {"as": as_state.value}))
        return self._apply(change)
