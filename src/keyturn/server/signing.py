"""The sign routes' shared parts: the sign step, the batch rule, and the body checks.

``SignStep`` is the seam every sign route calls (the FastAPI reference routes and the fast
path alike): today ``KeyService.sign``; a change to how a token is signed (e.g. bringing the
served JWKS up to the ring's version first) replaces it in ``create_app`` for all of them.

``parse_sign`` / ``parse_batch`` check a parsed JSON body as the pydantic models
``SignIn`` / ``SignBatchIn`` do, without pydantic. They answer only "valid, here are the
items" or "not known valid" (None): the fast path hands a None to the FastAPI route, so every
error body is the framework's own. They may refuse more than pydantic would (that request
is then answered by the slower route), never less.
"""

from __future__ import annotations

from typing import Any, Protocol

from keyturn.errors import InvalidInputError
from keyturn.ring.policy_contract import MAX_DURATION, MIN_DURATION

MAX_BATCH = 100  # claim sets in one sign-batch request
MAX_DEPTH = 32  # nesting of claim values (as SignIn's check)
MAX_TIMESTAMP = 1e11  # |exp|, |nbf| beyond this are not times (as SignIn's check)

Item = tuple[dict[str, Any], float | None]


class SignStep(Protocol):
    """Sign one claim set for a tenant: (token, full claims). Raises KeyturnError."""

    def __call__(
        self, name: str, claims: dict[str, Any], *, ttl: float | None = None
    ) -> tuple[str, dict[str, Any]]: ...


def sign_items(sign: SignStep, tenant: str, items: list[Item]) -> list[tuple[str, dict[str, Any]]]:
    """Sign every item or none: the first failure is raised and nothing is returned; an
    item's own error (invalid input, lifetime) names its index, ``items[i]: ...``.

    The bodies were checked before the first signature (``parse_batch`` or the model); the
    checks that need the tenant (lifetime, ``iss``, ``nbf``) are the sign step's own, so a
    failure there discards the tokens already made: they are never returned nor counted.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for i, (claims, ttl) in enumerate(items):
        try:
            out.append(sign(tenant, claims, ttl=ttl))
        except InvalidInputError as exc:
            exc.detail = f"items[{i}]: {exc.detail}"
            raise
    return out


def _claims_ok(claims: dict[str, Any]) -> bool:
    for name in ("exp", "nbf"):
        v = claims.get(name)
        if (type(v) is int or type(v) is float) and abs(v) > MAX_TIMESTAMP:
            return False
    # Depth as SignIn counts it: the claims object is level 0, deeper than MAX_DEPTH refused.
    stack: list[tuple[Any, int]] = [(v, 1) for v in claims.values() if type(v) in (dict, list)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        children = value.values() if type(value) is dict else value
        stack.extend((v, depth + 1) for v in children if type(v) in (dict, list))
    return True


def _item(obj: Any) -> Item | None:
    if type(obj) is not dict:
        return None
    claims: dict[str, Any] = {}
    ttl: float | None = None
    for k, v in obj.items():
        if k == "claims":
            if type(v) is not dict:
                return None
            claims = v
        elif k == "ttl":
            if v is not None:
                # Strict float: int or float, never bool; the limits of the Duration type.
                if (
                    not (type(v) is int or type(v) is float)
                    or not MIN_DURATION <= v <= MAX_DURATION
                ):
                    return None
                ttl = v
        else:
            return None  # extra="forbid"
    if claims and not _claims_ok(claims):
        return None
    return claims, ttl


def parse_sign(body: Any) -> Item | None:
    """``{"claims": {...}, "ttl": n}`` (both optional), or None."""
    return _item(body)


def parse_batch(body: Any) -> list[Item] | None:
    """``{"items": [item, ...]}`` with 1 to MAX_BATCH items, or None."""
    if type(body) is not dict or len(body) != 1:
        return None
    raw = body.get("items")
    if type(raw) is not list or not 1 <= len(raw) <= MAX_BATCH:
        return None
    items: list[Item] = []
    for obj in raw:
        item = _item(obj)
        if item is None:
            return None
        items.append(item)
    return items
