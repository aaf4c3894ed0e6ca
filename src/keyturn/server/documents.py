"""Pre-rendered public documents per tenant (JWKS, discovery, revocations) in a bounded LRU.

The hot path reads bytes from here; a miss renders from the store once (single flight) in a
worker thread. Invalidation comes from ``service.on_change`` (this process) and from watchers
(other processes); both may call :meth:`DocumentCache.invalidate` from any thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import orjson

from keyturn import jwks_http
from keyturn.config import Settings
from keyturn.errors import CacheBusyError as CacheBusyError  # re-exported
from keyturn.errors import ConcurrentChangeError, InvalidInputError, TenantNotFoundError
from keyturn.jwks_http import format_cache_control
from keyturn.ring.model import KeyState, check_tenant_name
from keyturn.ring.policy_contract import DURATION_FIELDS
from keyturn.ring.ring import Ring
from keyturn.server.oauth_metadata import discovery_fields
from keyturn.service import KeyService, jwks_document

DEFAULT_MAX_TENANTS = 10_000
DEFAULT_NEGATIVE_TTL = 2.0
# Store reads for cache misses at once: the public paths need no credentials, so a flood of
# made-up tenant names must not take every worker thread (the API's sync routes use them too).
DEFAULT_MAX_FILLS = 8
# Misses that may wait for one of those reads; beyond that a miss is refused (503) rather than
# queued without bound behind a flood.
DEFAULT_MAX_WAITING_FILLS = 256


# The revocation feed's budget: far below the 256 KiB a keyturn verifier reads per event.
FEED_MAX_BYTES = 128 * 1024

JWKS_CONTENT_TYPE = b"application/jwk-set+json"
JSON_CONTENT_TYPE = b"application/json"

# Operator-supplied discovery fields per tenant ("*" for every tenant): the endpoints of the
# authorization server that uses keyturn to sign, which keyturn itself does not have.
DiscoveryExtra = Mapping[str, Mapping[str, Any]]

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Doc:
    """One rendered document with the exact header lists for its 200 and 304 responses."""

    body: bytes
    etag: bytes
    headers_200: Headers
    headers_304: Headers
    # The ASGI messages themselves, built once: the hot path sends these dicts as they are.
    start_200: dict[str, Any]
    start_304: dict[str, Any]
    body_200: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Revocation:
    kid: str
    revoked_at: float
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"kid": self.kid, "revoked_at": self.revoked_at, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class TenantDocs:
    """Everything the public surface serves for one tenant, at one ``key_version``."""

    name: str
    key_version: int
    jwks: Doc
    discovery: Doc
    revocations: Doc
    revoked: tuple[Revocation, ...]
    kids: frozenset[str] = frozenset()  # the kids the JWKS publishes


def strong_etag(body: bytes) -> bytes:
    # 128 bits of SHA-256: equal bodies, equal tags, across replicas and restarts.
    return b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'


def make_doc(body: bytes, content_type: bytes, max_age: int) -> Doc:
    # orjson's output keeps its ~4 KiB working buffer; an exact copy is a fifth of that, which
    # is most of a cached tenant's memory (measured with tracemalloc: 14.5 KiB -> ~4 KiB).
    body = bytes(memoryview(body))
    etag = strong_etag(body)
    cache_control = format_cache_control(max_age).encode()
    common: Headers = [
        (b"etag", etag),
        (b"cache-control", cache_control),
        (b"access-control-allow-origin", b"*"),
    ]
    headers_200: Headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *common,
    ]
    return Doc(
        body=body,
        etag=etag,
        headers_200=headers_200,
        headers_304=common,
        start_200={"type": "http.response.start", "status": 200, "headers": headers_200},
        start_304={"type": "http.response.start", "status": 304, "headers": common},
        body_200={"type": "http.response.body", "body": body},
    )


def tenant_base_url(settings: Settings, name: str) -> str:
    """Where this server publishes a tenant's documents (the default tenant at the root)."""
    return jwks_http.tenant_base_url(settings.public_url, name, settings.default_tenant)


def render(
    service: KeyService, settings: Settings, name: str, extra: DiscoveryExtra | None = None
) -> TenantDocs:
    """Read one tenant's ring and render its documents (blocking: call from a thread)."""
    tenant, keys = service.public_keys(name)
    ring = Ring(name, tenant.policy, keys)
    max_age = max(0, int(tenant.policy.jwks_max_age))
    base = tenant_base_url(settings, name)
    published = ring.published
    revoked = feed_entries(
        [
            Revocation(k.kid, k.revoked_at or 0.0, k.revocation_reason)
            for k in ring.keys
            if k.state == KeyState.REVOKED
        ],
        now=service.clock.now(),
        horizon=tenant.policy.token_ttl + tenant.policy.jwks_max_age + tenant.policy.clock_skew,
    )
    # Algorithms of the published keys (during an algorithm change, old and new), then the
    # policy's; OpenID Discovery wants every alg a verifier may meet.
    algs: list[str] = []
    for a in [*(k.alg.value for k in published), tenant.policy.alg.value]:
        if a not in algs:
            algs.append(a)
    discovery: dict[str, Any] = {
        "issuer": tenant.issuer,
        "jwks_uri": jwks_http.jwks_url(base),
        # keyturn has no authorization endpoint (the app authenticates users itself and opens
        # sessions through the API); its token endpoint serves client_credentials and
        # refresh_token. The REQUIRED descriptive fields say what its tokens are: ID-token-
        # shaped JWTs with public subjects.
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        **discovery_fields(base),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "keyturn_revocations_uri": jwks_http.revocations_url(base),
        "keyturn_revocations_stream_uri": jwks_http.revocations_stream_url(base),
        # The timing policy, in seconds, so tools (keyturn diagnose) can judge whether the
        # caches in front of this issuer are safe for its rotation. Public by nature: it is
        # visible anyway in the JWKS headers and the rhythm of kid changes.
        "keyturn_policy": {f: getattr(tenant.policy, f) for f in DURATION_FIELDS},
    }
    if extra:
        for key in ("*", name):
            discovery.update(extra.get(key, {}))
    jwks_body = orjson.dumps(jwks_document(ring))
    rev_body = orjson.dumps({"issuer": tenant.issuer, "revoked": [r.to_dict() for r in revoked]})
    return TenantDocs(
        name=name,
        key_version=tenant.key_version,
        jwks=make_doc(jwks_body, JWKS_CONTENT_TYPE, max_age),
        discovery=make_doc(orjson.dumps(discovery), JSON_CONTENT_TYPE, max_age),
        revocations=make_doc(rev_body, JSON_CONTENT_TYPE, max_age),
        revoked=revoked,
        kids=frozenset(k.kid for k in published),
    )


def feed_entries(
    revoked: list[Revocation], *, now: float, horizon: float, max_bytes: int = FEED_MAX_BYTES
) -> tuple[Revocation, ...]:
    """The revocations the feed still announces, oldest first, bounded in count and bytes.

    A kid revoked more than ``horizon`` (T + C + S) ago is dropped: every token it signed has
    expired (T), every cache that held it in a JWKS has expired (C), and skew is spent (S), so
    no verifier can still need the news. Beyond that the newest entries are kept within
    ``max_bytes``: the snapshot event must stay well inside what verifiers read (keyturn's
    reads 256 KiB per event), or pushes would stop for everyone.
    """
    live = sorted(
        (r for r in revoked if r.revoked_at + horizon >= now), key=lambda r: (r.revoked_at, r.kid)
    )
    kept: list[Revocation] = []
    size = 0
    for r in reversed(live):
        size += len(orjson.dumps(r.to_dict())) + 1
        if size > max_bytes:
            break
        kept.append(r)
    kept.reverse()
    return tuple(kept)


def valid_tenant_name(name: str) -> bool:
    try:
        check_tenant_name(name)
    except InvalidInputError:
        return False
    return True


class DocumentCache:
    """Bounded LRU of :class:`TenantDocs`, plus a short negative cache of unknown names."""

    def __init__(
        self,
        service: KeyService,
        settings: Settings,
        *,
        max_tenants: int = DEFAULT_MAX_TENANTS,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        discovery_extra: DiscoveryExtra | None = None,
        max_fills: int = DEFAULT_MAX_FILLS,
        max_waiting_fills: int = DEFAULT_MAX_WAITING_FILLS,
    ) -> None:
        if max_tenants < 1:
            raise ValueError("max_tenants must be at least 1")
        if max_fills < 1:
            raise ValueError("max_fills must be at least 1")
        if max_waiting_fills < 0:
            raise ValueError("max_waiting_fills must not be negative")
        if negative_ttl < 0:
            raise ValueError("negative_ttl must not be negative")
        self.service = service
        self.settings = settings
        self.max_tenants = max_tenants
        self.negative_ttl = negative_ttl
        self.discovery_extra = discovery_extra
        self._docs: OrderedDict[str, TenantDocs] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every invalidation: a render that started before one is served but not
        # stored, so a slow read can never put a stale document back after a change.
        self._generation = 0
        self._inflight: dict[str, asyncio.Future[TenantDocs | None]] = {}
        self.max_fills = max_fills
        self.max_waiting_fills = max_waiting_fills
        self._fill_limiter: anyio.CapacityLimiter | None = None  # made in the event loop
        self._listeners: list[Callable[[str | None], None]] = []

    # --- reads (event loop) ----------------------------------------------------------------
    def peek(self, name: str) -> TenantDocs | None:
        """The cached documents, refreshing LRU order; None on a miss."""
        with self._lock:
            docs = self._docs.get(name)
            if docs is not None:
                self._docs.move_to_end(name)
            return docs

    def known_missing(self, name: str) -> bool:
        with self._lock:
            until = self._missing.get(name)
            if until is None:
                return False
            if until > self.service.clock.monotonic():
                return True
            del self._missing[name]
            return False

    async def get(self, name: str, *, priority: bool = False) -> TenantDocs | None:
        """The tenant's documents, rendered on a miss; None when no such tenant exists.

        Misses read the store at most ``max_fills`` at a time, with at most
        ``max_waiting_fills`` more waiting (beyond that ``CacheBusyError``): the public paths
        need no credentials, and made-up names must neither take every worker thread nor queue
        without bound. ``priority`` fills (a tenant known to exist, e.g. one whose revocation
        stream must be pushed) skip that queue.
        """
        docs = self.peek(name)
        if docs is not None:
            return docs
        if not valid_tenant_name(name) or self.known_missing(name):
            return None
        task = self._inflight.get(name)
        if task is None:
            if priority:
                limiter = None
            else:
                if len(self._inflight) >= self.max_fills + self.max_waiting_fills:
                    raise CacheBusyError("too many document fills waiting for the store")
                if self._fill_limiter is None:
                    self._fill_limiter = anyio.CapacityLimiter(self.max_fills)
                limiter = self._fill_limiter
            # The fill is a task of its own: a caller that gives up (client gone, timeout)
            # does not cancel it for the others waiting on the same tenant.
            task = asyncio.ensure_future(
                anyio.to_thread.run_sync(self._load, name, limiter=limiter)
            )
            self._inflight[name] = task
            task.add_done_callback(lambda t: self._fill_done(name, t))
        return await asyncio.shield(task)

    def _fill_done(self, name: str, task: asyncio.Future[TenantDocs | None]) -> None:
        self._inflight.pop(name, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone away

    def _load(self, name: str) -> TenantDocs | None:
        with self._lock:
            gen = self._generation
        try:
            docs = render(self.service, self.settings, name, self.discovery_extra)
        except TenantNotFoundError:
            with self._lock:
                if gen == self._generation and self.negative_ttl > 0:
                    self._missing[name] = self.service.clock.monotonic() + self.negative_ttl
                    self._missing.move_to_end(name)
                    while len(self._missing) > self.max_tenants:
                        self._missing.popitem(last=False)
            return None
        with self._lock:
            held = self._docs.get(name)
            # Never back in time: a slow render of an older version must not replace a newer
            # one stored meanwhile (the sign path relies on the stored version only growing).
            if gen == self._generation and (held is None or held.key_version <= docs.key_version):
                self._docs[name] = docs
                self._docs.move_to_end(name)
                while len(self._docs) > self.max_tenants:
                    self._docs.popitem(last=False)
        return docs

    def ensure_published(self, name: str, key_version: int, kid: str) -> None:
        """Before a token signed by ``kid`` (ring at ``key_version``) leaves: serve that ring.

        Blocking (the sign route runs in a worker thread). The sign path reads the ring itself,
        so it can be ahead of these documents until a watcher reports the change (a CLI command,
        another replica): without this a verifier fetching our JWKS right after would not find
        the kid and remember it as missing. Costs one dictionary read when up to date.
        """
        with self._lock:
            held = self._docs.get(name)
        if held is not None and held.key_version >= key_version and kid in held.kids:
            return
        if held is not None:
            self.invalidate(name)  # listeners too: the revocation stream pushes at once
        docs = self._load(name)
        if docs is None or kid not in docs.kids:
            # The kid left the ring between the sign read and now (revoked meanwhile): the
            # token must not leave either.
            raise ConcurrentChangeError(
                f"the signing key {kid} of tenant {name} changed while signing; try again"
            )

    def serves(self, name: str, key_version: int, kid: str) -> bool:
        """True if :meth:`ensure_published` would return at once, without a store read (for a
        caller on the event loop deciding whether it may sign there)."""
        with self._lock:
            held = self._docs.get(name)
        return held is not None and held.key_version >= key_version and kid in held.kids

    def load_sync(self, name: str) -> TenantDocs | None:
        """Blocking fill, for threads (readiness checks, watchers)."""
        docs = self.peek(name)
        return docs if docs is not None else self._load(name)

    # --- invalidation (any thread) --------------------------------------------------------
    def add_listener(self, fn: Callable[[str | None], None]) -> None:
        """``fn(name)`` runs after every invalidation, in the invalidating thread (None: all)."""
        self._listeners.append(fn)

    def invalidate(self, name: str) -> None:
        with self._lock:
            self._generation += 1
            self._docs.pop(name, None)
            self._missing.pop(name, None)
        for fn in self._listeners:
            fn(name)

    def invalidate_all(self) -> None:
        """Anything may have changed (e.g. a LISTEN connection was lost): drop everything."""
        with self._lock:
            self._generation += 1
            self._docs.clear()
            self._missing.clear()
        for fn in self._listeners:
            fn(None)

    def versions(self) -> dict[str, int]:
        """tenant -> key_version of every cached tenant (watchers compare against the store)."""
        with self._lock:
            return {name: d.key_version for name, d in self._docs.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._docs)
