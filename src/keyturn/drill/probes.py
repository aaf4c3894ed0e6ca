"""The verifiers a drill runs side by side: keyturn's in several configurations, and a naive one.

A probe verifies one token and answers ``None`` (accepted) or the rejection's code. Each kind
states its promise: how soon after a revocation it must refuse the revoked key's tokens. The
naive verifier (PyJWT's ``PyJWKClient``, if installed) promises nothing: it is there to show what
a cache-only client does in the same moment.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from keyturn.errors import ConfigError, KeyturnError
from keyturn.verifier import (
    DEFAULT_POLL_INTERVAL,
    RevocationFeed,
    Verifier,
)

# Seconds within which each keyturn configuration must drop a revoked key (issue #12): the
# stream pushes at once; a poll adds one interval and a fetch; defaults poll every 10 s.
STREAM_PROMISE = 1.0
DEFAULT_PROMISE = 15.0
POLL_SLACK = 2.0

KINDS = ("default", "stream", "poll", "no-feed", "pyjwt")
DEFAULT_KINDS = ("default", "stream", "poll", "pyjwt")


class Probe(Protocol):
    """One verifier under test."""

    name: str
    keyturn: bool
    promise: float | None

    def verify(self, token: str) -> str | None: ...

    def fetches(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """What the probes verify against: the tenant's issuer, JWKS and token rules."""

    issuer: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    audience: str


class KeyturnProbe:
    """keyturn's ``Verifier`` in one configuration."""

    keyturn = True

    def __init__(self, name: str, verifier: Verifier, promise: float) -> None:
        self.name = name
        self.promise: float | None = promise
        self._verifier = verifier

    def verify(self, token: str) -> str | None:
        try:
            self._verifier.verify(token)
        except KeyturnError as exc:
            return exc.code
        return None

    def fetches(self) -> int:
        return self._verifier.metrics.snapshot().fetches

    def close(self) -> None:
        self._verifier.close()


class PyJWTProbe:
    """PyJWT's ``PyJWKClient``: caches the set, refetches on an unknown kid, knows no feed."""

    keyturn = False
    promise: float | None = None

    def __init__(self, name: str, target: Target) -> None:
        import jwt

        self.name = name
        self._jwt = jwt
        self._target = target
        self._fetches = 0
        self._lock = threading.Lock()
        probe = self

        class CountingClient(jwt.PyJWKClient):
            def fetch_data(self) -> Any:
                with probe._lock:
                    probe._fetches += 1
                return super().fetch_data()

        # PyJWT's defaults: the whole set cached for 300 s, keys never dropped before that.
        self._client = CountingClient(target.jwks_uri)

    def verify(self, token: str) -> str | None:
        jwt = self._jwt
        try:
            key = self._client.get_signing_key_from_jwt(token)
            jwt.decode(
                token,
                key.key,
                algorithms=list(self._target.algorithms),
                audience=self._target.audience,
                issuer=self._target.issuer,
            )
        except jwt.PyJWKClientError:
            return "unknown_kid"
        except jwt.ExpiredSignatureError:
            return "expired"
        except jwt.InvalidSignatureError:
            return "bad_signature"
        except jwt.PyJWTError as exc:
            return type(exc).__name__
        return None

    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def close(self) -> None:
        return None


def pyjwt_available() -> bool:
    try:
        import jwt  # noqa: F401
    except ImportError:
        return False
    return True


def make_probes(
    kinds: Sequence[str], target: Target, *, poll_interval: float = DEFAULT_POLL_INTERVAL
) -> list[Probe]:
    """One probe per kind; ``pyjwt`` is skipped when PyJWT is not installed."""
    probes: list[Probe] = []
    try:
        for kind in kinds:
            probe = _make(kind, target, poll_interval)
            if probe is not None:
                probes.append(probe)
    except BaseException:
        for p in probes:
            p.close()
        raise
    return probes


def _make(kind: str, target: Target, poll_interval: float) -> Probe | None:
    common: dict[str, Any] = {
        "issuer": target.issuer,
        "audience": target.audience,
        "algorithms": list(target.algorithms),
    }
    if kind == "default":
        return KeyturnProbe("keyturn default", Verifier(**common), DEFAULT_PROMISE)
    if kind == "stream":
        feed = RevocationFeed(mode="stream")
        return KeyturnProbe("keyturn stream", Verifier(**common, revocations=feed), STREAM_PROMISE)
    if kind == "poll":
        feed = RevocationFeed(mode="poll", poll_interval=poll_interval)
        return KeyturnProbe(
            f"keyturn poll {poll_interval:g}s",
            Verifier(**common, revocations=feed),
            poll_interval + POLL_SLACK,
        )
    if kind == "no-feed":
        # Unsafe on purpose: revocation only as fast as max-age. The drill must fail it.
        return KeyturnProbe(
            "keyturn no feed", Verifier(**common, revocations=None), DEFAULT_PROMISE
        )
    if kind == "pyjwt":
        return PyJWTProbe("pyjwt PyJWKClient", target) if pyjwt_available() else None
    raise ConfigError(f"unknown verifier kind {kind!r}: choose from {', '.join(KINDS)}")
