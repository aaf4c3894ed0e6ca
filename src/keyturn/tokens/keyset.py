"""An immutable set of verifying keys built from a JWKS document, tolerant of real-world sets."""

from __future__ import annotations

from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from keyturn.errors import InvalidInputError, InvalidKeyError, UnsupportedAlgorithmError
from keyturn.keys.algorithms import SPECS, Alg
from keyturn.keys.jwk import public_key_from_jwk
from keyturn.tokens.jws import VerifyingKey

MAX_JWKS_KEYS = 100


@dataclass(frozen=True)
class SkippedKey:
    kid: str | None
    reason: str


class KidMap(dict[str, VerifyingKey]):
    """kid -> key; also callable, so ``KeySet.keys`` is both this dict and ``Mapping.keys()``.

    ``KeySet`` is a ``Mapping`` whose data lives in a field named ``keys`` (callers use it as a
    dict). A plain dict there shadows ``Mapping.keys()``, which ``dict(keyset)`` and
    ``{**keyset}`` call; calling this map gives them the view they expect.
    """

    def __call__(self) -> KeysView[str]:
        return dict.keys(self)


@dataclass(frozen=True)
class KeySet(Mapping[str, VerifyingKey]):
    """kid -> key. Entries without ``kid`` are kept aside for tokens without ``kid``."""

    keys: KidMap = field(default_factory=KidMap)
    anonymous: tuple[VerifyingKey, ...] = ()
    skipped: tuple[SkippedKey, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.keys, KidMap):  # a plain dict from a caller
            object.__setattr__(self, "keys", KidMap(self.keys))

    def __getitem__(self, kid: str) -> VerifyingKey:
        return self.keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_jwks(
        cls, doc: dict[str, Any] | bytes, *, max_keys: int | None = MAX_JWKS_KEYS
    ) -> KeySet:
        """Parse a JWKS; skip (not fail on) ``use: enc``, unknown types and unknown algorithms.

        An entry without ``alg`` is admitted for every algorithm its key type and curve allow;
        the caller's allow-list narrows that at verification time. ``max_keys`` caps a set
        fetched from elsewhere; ``None`` is for the issuer's own ring (its size is its own).
        """
        if isinstance(doc, bytes):
            try:
                doc = orjson.loads(doc)
            except orjson.JSONDecodeError as exc:
                raise InvalidInputError(f"JWKS is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise InvalidInputError("not a JWKS: expected an object with a 'keys' array")
        entries = doc["keys"]
        if max_keys is not None and len(entries) > max_keys:
            raise InvalidInputError(f"JWKS has {len(entries)} keys, more than {max_keys}")
        keys = KidMap()
        duplicated: set[str] = set()
        anonymous: list[VerifyingKey] = []
        skipped: list[SkippedKey] = []
        for entry in entries:
            if not isinstance(entry, dict):
                skipped.append(SkippedKey(None, "entry is not an object"))
                continue
            kid = entry.get("kid")
            if kid is not None and not isinstance(kid, str):
                # A malformed kid is not "no kid": filed as anonymous, the key could verify
                # kid-less tokens it was never meant for. No token can name it either.
                skipped.append(SkippedKey(None, f"'kid' is not a string: {kid!r:.40}"))
                continue
            try:
                vk = _entry_to_key(entry, kid)
            except (InvalidKeyError, UnsupportedAlgorithmError, _Skip) as exc:
                skipped.append(SkippedKey(kid, str(exc)))
                continue
            if kid is None:
                anonymous.append(vk)
            elif kid in keys or kid in duplicated:
                # Two different keys under one kid: trusting either would be a guess. Remember
                # the kid, or a third entry under it would be admitted again.
                skipped.append(SkippedKey(kid, "duplicate kid: every entry ignored"))
                keys.pop(kid, None)
                duplicated.add(kid)
            else:
                keys[kid] = vk
        return cls(keys, tuple(anonymous), tuple(skipped))


class _Skip(Exception):
    pass


def _entry_to_key(entry: dict[str, Any], kid: str | None) -> VerifyingKey:
    use = entry.get("use")
    if use is not None and use != "sig":
        raise _Skip(f"use {use!r} is not 'sig'")
    ops = entry.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        raise _Skip("key_ops does not include 'verify'")
    if entry.get("kty") not in ("RSA", "EC", "OKP"):
        raise _Skip(f"unsupported key type {entry.get('kty')!r}")
    key = public_key_from_jwk(entry)
    alg = entry.get("alg")
    if alg is not None:
        if alg not in Alg.__members__.values():
            raise _Skip(f"unsupported algorithm {alg!r}")
        algs: list[Alg] = [Alg(alg)]
    else:
        from keyturn.keys.algorithms import algs_for_key

        algs = list(algs_for_key(key))
    # check_key_for_alg inside VerifyingKey refuses e.g. an RSA-1024 key or an alg/curve mismatch.
    for a in algs:
        if SPECS[a].kty != entry.get("kty"):
            raise _Skip(f"alg {a} does not match kty {entry.get('kty')}")
    return VerifyingKey(key, algs, kid)
