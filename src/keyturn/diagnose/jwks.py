"""Inspect any JWKS: each key's type, algorithm, size and thumbprint, skipped entries, caching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyturn.diagnose._http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, CacheControl, Fetch, fetch
from keyturn.errors import InvalidInputError, KeyturnError
from keyturn.keys.jwk import PRIVATE_MEMBERS, public_key_from_jwk
from keyturn.keys.jwk import thumbprint as jwk_thumbprint
from keyturn.tokens.keyset import KeySet


@dataclass(frozen=True)
class KeyInfo:
    """One JWKS entry as published, plus what keyturn makes of it."""

    index: int
    kid: str | None
    kty: str | None
    alg: str | None
    use: str | None
    size: int | None = None  # RSA modulus bits, EC/OKP curve bits
    crv: str | None = None
    thumbprint: str | None = None
    usable: bool = False
    skip_reason: str | None = None
    private_members: tuple[str, ...] = ()

    @property
    def kid_is_thumbprint(self) -> bool | None:
        """Whether ``kid`` is the RFC 7638 thumbprint (keyturn's convention); informational."""
        if self.kid is None or self.thumbprint is None:
            return None
        return self.kid == self.thumbprint

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kid": self.kid,
            "kty": self.kty,
            "alg": self.alg,
            "use": self.use,
            "size": self.size,
            "crv": self.crv,
            "thumbprint": self.thumbprint,
            "kid_is_thumbprint": self.kid_is_thumbprint,
            "usable": self.usable,
            "skip_reason": self.skip_reason,
            "private_members": list(self.private_members),
        }


@dataclass(frozen=True)
class JwksReport:
    """A fetched JWKS: the HTTP exchange, its keys, and its caching headers."""

    fetch: Fetch
    keys: tuple[KeyInfo, ...] = ()
    error: str | None = None
    keyset: KeySet | None = field(default=None, repr=False, compare=False)
    now: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.keyset is not None

    @property
    def cache_control(self) -> CacheControl:
        return self.fetch.cache_control

    @property
    def clock_offset(self) -> float | None:
        """Server ``Date`` minus our clock, seconds (positive: the server is ahead of us).

        ``Date`` has one-second resolution and a cache may replay the origin's ``Date``; callers
        treat only offsets of several seconds as meaningful.
        """
        date = self.fetch.date
        return None if date is None else date - self.now

    @property
    def origin_fetched_at(self) -> float | None:
        """When the copy we received left the origin, by the server's clock: ``Date - Age``."""
        date = self.fetch.date
        if date is None:
            return None
        return date - (self.fetch.age or 0)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.keys if k.kid is not None)

    @property
    def all_kids_are_thumbprints(self) -> bool:
        """True when every usable key names itself by its thumbprint, as keyturn does."""
        usable = [k for k in self.keys if k.usable]
        return bool(usable) and all(k.kid_is_thumbprint for k in usable)

    def key(self, kid: str) -> KeyInfo | None:
        for k in self.keys:
            if k.kid == kid:
                return k
        return None

    def to_dict(self) -> dict[str, Any]:
        cc = self.cache_control
        return {
            "url": self.fetch.url,
            "http": self.fetch.to_dict(),
            "error": self.error,
            "keys": [k.to_dict() for k in self.keys],
            "caching": {
                "cache_control": cc.to_dict(),
                "etag": self.fetch.headers.get("etag"),
                "age": self.fetch.age,
                "date": self.fetch.headers.get("date"),
                "clock_offset_seconds": _round(self.clock_offset),
                "served_by_cache": self.fetch.served_by_cache,
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def describe_entry(index: int, entry: object) -> KeyInfo:
    """Facts about one entry, without deciding whether a verifier would use it."""
    if not isinstance(entry, dict):
        return KeyInfo(index, None, None, None, None, skip_reason="entry is not an object")

    def s(name: str) -> str | None:
        v = entry.get(name)
        return v if isinstance(v, str) else None

    private = tuple(sorted(PRIVATE_MEMBERS & entry.keys()))
    size: int | None = None
    tp: str | None = None
    problem: str | None = None
    try:
        key = public_key_from_jwk(entry)
        tp = jwk_thumbprint(key)
        if isinstance(key, rsa.RSAPublicKey):
            size = key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            size = key.curve.key_size
        else:
            size = 256  # Ed25519
    except KeyturnError as exc:
        problem = str(exc)
    return KeyInfo(
        index,
        s("kid"),
        s("kty"),
        s("alg"),
        s("use"),
        size,
        s("crv"),
        tp,
        skip_reason=problem,
        private_members=private,
    )


def analyse_jwks(result: Fetch, now: float) -> JwksReport:
    """Turn a fetch into a report; never raises for a bad document, it says what is wrong."""
    if not result.ok or result.body is None:
        return JwksReport(result, error=result.error or "no body", now=now)
    try:
        doc = orjson.loads(result.body)
    except orjson.JSONDecodeError as exc:
        ctype = result.headers.get("content-type", "?")
        return JwksReport(result, error=f"not JSON ({ctype}): {exc}", now=now)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        return JwksReport(
            result, error="not a JWKS: expected an object with a 'keys' array", now=now
        )
    try:
        keyset = KeySet.from_jwks(doc)
    except InvalidInputError as exc:
        return JwksReport(result, error=str(exc), now=now)
    reasons: dict[str | None, str] = {sk.kid: sk.reason for sk in keyset.skipped}
    infos: list[KeyInfo] = []
    for i, entry in enumerate(doc["keys"]):
        info = describe_entry(i, entry)
        usable = info.kid is not None and info.kid in keyset.keys
        if info.kid is None and isinstance(entry, dict) and info.skip_reason is None:
            usable = any(k.kid is None for k in keyset.anonymous)
        reason = info.skip_reason
        if not usable and reason is None:
            reason = reasons.get(info.kid, "not usable for signature verification")
        infos.append(
            KeyInfo(
                info.index,
                info.kid,
                info.kty,
                info.alg,
                info.use,
                info.size,
                info.crv,
                info.thumbprint,
                usable,
                None if usable else reason,
                info.private_members,
            )
        )
    error = None
    if not keyset.keys and not keyset.anonymous:
        error = "the JWKS has no usable signature key"
    return JwksReport(result, tuple(infos), error, keyset, now)


def inspect_jwks(
    url: str,
    *,
    client: httpx.Client,
    now: float,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    follow_redirects: bool = False,
) -> JwksReport:
    """Fetch and describe the JWKS at ``url``."""
    result = fetch(
        client, url, timeout=timeout, max_bytes=max_bytes, follow_redirects=follow_redirects
    )
    return analyse_jwks(result, now)
