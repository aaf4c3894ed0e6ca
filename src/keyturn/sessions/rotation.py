"""Refresh-token rotation with reuse detection (RFC 9700 section 4.14.2), as pure decisions.

Every use of a refresh token retires it and issues its successor. A retired token presented
again means two parties hold the family (the client and a thief), and the server cannot tell
which is which: the whole family is revoked, so the thief's successor dies with it and the
legitimate client must sign in again. One exception, kept short and documented: a token used
less than ``reuse_grace`` seconds ago whose successor nobody has used yet gets a fresh
successor, because that is what a client retrying after a lost response looks like; the
successor it superseded is then dead (presenting it is a reuse), so the family never has two
live branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from keyturn.sessions.model import RefreshTokenRecord, Session, SessionPolicy


class Verdict(StrEnum):
    ROTATE = "rotate"  # a live, unused token: retire it, issue the successor
    GRACE = "grace"  # a retry within the grace: issue another successor, revoke nothing
    REUSE = "reuse"  # a retired token again: revoke the family
    REVOKED = "revoked"  # the family is revoked already
    EXPIRED_IDLE = "expired_idle"  # unused for longer than the idle lifetime
    EXPIRED_ABSOLUTE = "expired_absolute"  # the session outlived its absolute lifetime
    WRONG_CLIENT = "wrong_client"  # presented by a client it was not issued to


REFUSAL_REASONS: dict[Verdict, str] = {
    Verdict.REUSE: "the refresh token was already used; the session is revoked",
    Verdict.REVOKED: "the session is revoked",
    Verdict.EXPIRED_IDLE: "the refresh token expired (idle lifetime)",
    Verdict.EXPIRED_ABSOLUTE: "the session expired (absolute lifetime)",
    Verdict.WRONG_CLIENT: "the refresh token was not issued to this client",
}


def judge(
    session: Session,
    token: RefreshTokenRecord,
    *,
    client_id: str,
    now: float,
    policy: SessionPolicy,
    successor_used: bool,
) -> Verdict:
    """What to do with a presented refresh token. ``successor_used``: has any token issued
    after this one been used (then a second presentation cannot be an innocent retry)."""
    if session.client_id != client_id:
        # Not a reuse: another client cannot have held it legitimately; change nothing.
        return Verdict.WRONG_CLIENT
    if session.revoked_at is not None:
        return Verdict.REVOKED
    if now >= session.absolute_expires_at:
        return Verdict.EXPIRED_ABSOLUTE
    if token.used_at is not None:
        # Strictly less: a grace of 0 turns the exception off, even for the same instant.
        if not successor_used and now - token.used_at < policy.reuse_grace:
            return Verdict.GRACE
        return Verdict.REUSE
    if token.generation != session.generation:
        # Unused, yet not the family's latest: a grace retry issued a sibling after it, so
        # two parties hold the family (the client and whoever retried). Rotating it would
        # leave two live branches that never trip reuse detection: revoke instead.
        return Verdict.REUSE
    if now >= token.idle_expires_at:
        return Verdict.EXPIRED_IDLE
    return Verdict.ROTATE


@dataclass(frozen=True)
class Issue:
    """The successor to write: its digest record, and the family's new generation."""

    record: RefreshTokenRecord
    generation: int


def successor(session: Session, token_hash: str, now: float, policy: SessionPolicy) -> Issue:
    """The next refresh token of ``session``: idle lifetime, never past the absolute end."""
    generation = session.generation + 1
    expires = min(now + policy.idle_ttl, session.absolute_expires_at)
    return Issue(RefreshTokenRecord(token_hash, generation, now, expires), generation)


def first_token(
    token_hash: str, now: float, absolute_expires_at: float, policy: SessionPolicy
) -> RefreshTokenRecord:
    return RefreshTokenRecord(token_hash, 1, now, min(now + policy.idle_ttl, absolute_expires_at))
