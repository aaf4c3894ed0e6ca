"""``POST /api/v1/tenants/{tenant}/tokens/sign`` (and ``sign-batch``) as a bare ASGI callable.

The sign route is an authorization server's hot path, so it is served like the public
documents: in front of FastAPI, with no database round trip per request in steady state.

- The API key comes from :class:`~keyturn.server.keycache.ApiKeyCache` (a dict look-up and a
  constant-time hash compare; a store read only when the entry is older than the service's
  revalidation bound or was dropped by a change); ``last_used_at`` is written by a thread.
- The body is parsed with orjson and checked by ``keyturn.server.signing`` (no pydantic).
- ES256 and EdDSA are signed on the event loop (~30 µs, less than a thread-pool hop); the
  other algorithms, or a signer that needs a store read first, go to the thread pool.

Same answers as the FastAPI routes, which stay registered (the OpenAPI document, and every
case the fast path does not take): 401/403 and every error the sign step raises are rendered
here from the same problem table; a body not known valid (or not JSON, or of another media
type) is handed to FastAPI with its bytes, so its 422 is the framework's own. Order as
FastAPI's: authentication, then the body, then the right, then the signature.

The management API's middleware (``RequestId``, ``BodyLimit``, ``JsonOnly``) is done here in
the one pass over the headers the route needs anyway, with the same answers (the 413 and 415
come from ``keyturn.server.guards``): three ASGI layers cost ~10 µs a request, a third of
what the route adds to an ES256 signature (``scripts/bench sign-api``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, NamedTuple, Protocol

import anyio.to_thread
import orjson

from keyturn.errors import AuthError, KeyturnError, StoreUnavailableError
from keyturn.keys.algorithms import Alg
from keyturn.server.auth import REALM, Principal, Right
from keyturn.server.guards import (
    DEFAULT_MAX_BODY,
    NoStore,
    declared_too_large,
    has_body,
    is_json_media_type,
    read_bounded,
    replay,
    send_too_large,
    send_unsupported,
)
from keyturn.server.keycache import ApiKeyCache, CachedKey
from keyturn.server.logs import is_safe_request_id, new_request_id, request_id
from keyturn.server.problems import problem, problem_for, send_problem
from keyturn.server.public import ASGIApp, Message, Receive, Scope, Send
from keyturn.server.signing import Item, SignStep, parse_batch, parse_sign, sign_items
from keyturn.store.apikeys import parse_token

log = logging.getLogger("keyturn.server")

PREFIX = "/api/v1/tenants/"
_TENANT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Signed on the event loop. A thread-pool hop costs ~50-100 µs here, more than an ES256 or
# EdDSA signature; for RS256 (~280 µs) it was measured (scripts/bench sign-api, one worker on
# one core): 0.60 of the floor with the hop, 0.86 inline. The hop frees the loop only for
# the GIL-released part of the signature, which the pinned core cannot run in parallel.
INLINE_ALGS = frozenset(Alg)
INLINE_BATCH = 16  # a larger batch goes to a thread even for a cheap algorithm

# Signed tokens are secrets to whoever holds them: no cache may keep one (RFC 6749 5.1 asks
# the same of token responses); the whole /api/ surface says so (guards.NoStore).
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_NO_STORE = (b"cache-control", b"no-store")

NO_KEY = "an API key is required: Authorization: Bearer kt_..."
NOT_BEARER = "use the Bearer scheme: Authorization: Bearer kt_..."
BAD_KEY = "invalid or revoked API key"


class _Head(NamedTuple):
    """What the sign routes read from the request headers, in one pass."""

    authorization: bytes | None
    content_type: bytes | None
    request_id: str
    rid_header: tuple[bytes, bytes]
    too_large: bool  # a Content-Length over the body limit
    not_json: bytes | Literal[False] | None  # False, or the Content-Type a 415 names


class SignObserver(Protocol):
    def signed(self, tenant: str, token: str) -> None: ...

    def store_error(self, operation: Any) -> None: ...


def match(path: str) -> tuple[str, bool] | None:
    """(tenant, batch) for the two sign paths, None for anything else (tenant unchecked)."""
    if not path.startswith(PREFIX):
        return None
    tenant, _, rest = path[len(PREFIX) :].partition("/")
    if rest == "tokens/sign":
        return tenant, False
    if rest == "tokens/sign-batch":
        return tenant, True
    return None


def _json_media(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class SignRoutes:
    """ASGI: ``POST`` to a sign path goes to ``sign``, everything else to ``other``."""

    def __init__(self, sign: SignFastApp, other: ASGIApp) -> None:
        self.sign = sign
        self.other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = (
            match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if hit is None:
            await self.other(scope, receive, send)
        else:
            await self.sign.handle(scope, receive, send, *hit)


class SignFastApp:
    """The two sign routes; every other request (and every doubtful body) to ``fallback``."""

    def __init__(
        self,
        fallback: ASGIApp,
        *,
        keys: ApiKeyCache,
        sign: SignStep,
        warm: Callable[[str], tuple[Alg, int, str] | None],
        prepare: Callable[[str], object],
        recheck: Callable[[str], object] | None = None,
        published: Callable[[str, int, str], bool] | None = None,
        observer: SignObserver | None = None,
        inline_algs: frozenset[Alg] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        # Every request the fast path does not answer itself: a body not known valid goes to
        # the FastAPI route (with the same request id and no-store as the rest of the API).
        self.fallback = NoStore(fallback)
        self.max_body = max_body
        self.keys = keys
        self.sign = sign
        # The seam with the sign step's barrier ("the served JWKS has this kid before a token
        # leaves"): ``warm`` says which signer the step would use without a store read, and
        # ``published`` whether the barrier would pass at once; otherwise the step runs in a
        # thread, where its reads may block.
        self.warm = warm
        self.published = published
        self.prepare = prepare
        self.recheck = recheck
        # One store read at a time per key id or tenant: the requests that find an entry
        # stale wait for the same read instead of each sending its own (32 connections would
        # otherwise send 32 reads every revalidation period).
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._kicked: dict[str, float] = {}
        self.observer = observer
        # Read here, not at import: the bench measures RS256 inline by changing INLINE_ALGS.
        self.inline_algs = INLINE_ALGS if inline_algs is None else inline_algs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = (
            match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if hit is None:
            await self.fallback(scope, receive, send)
        else:
            await self.handle(scope, receive, send, *hit)

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, tenant: str, batch: bool
    ) -> None:
        """A ``POST`` to a sign path (``match`` said so)."""
        head = self._head(scope["headers"])
        ctx = request_id.set(head.request_id)
        await self._answer(scope, receive, send, tenant, batch, head)
        # Reset only on success, as RequestId: an exception keeps the id on the server's log.
        request_id.reset(ctx)

    def _head(self, headers: list[tuple[bytes, bytes]]) -> _Head:
        authorization: bytes | None = None
        content_type: bytes | None = None  # the first: the fast path's own media check
        last_type: bytes | None = None  # the last, as JsonOnly sees it (a dict of the headers)
        last_length: bytes | None = None
        chunked = False
        given: bytes | None = None
        too_large = False
        for name, value in headers:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
                last_type = value
            elif name == b"content-length":
                last_length = value
                too_large = too_large or declared_too_large(value, self.max_body)
            elif name == b"x-request-id":
                if given is None:
                    given = value
            elif name == b"transfer-encoding":
                chunked = True
        # As RequestId: a safe X-Request-ID is kept, anything else replaced.
        rid = given.decode("latin-1") if given is not None else None
        if rid is None or not is_safe_request_id(rid):
            rid = new_request_id()
        not_json = has_body(last_length, chunked) and (
            last_type is None or not is_json_media_type(last_type)
        )
        return _Head(
            authorization, content_type, rid, (b"x-request-id", rid.encode()), too_large,
            last_type if not_json else False,
        )  # fmt: skip

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, tenant: str, batch: bool, head: _Head
    ) -> None:
        rid_header = head.rid_header
        extra = [rid_header]
        # As BodyLimit, then JsonOnly: a body over the limit (declared or read) is 413, a
        # body that is not JSON 415, both before the key is looked at.
        if head.too_large:
            await send_too_large(send, self.max_body, extra)
            return
        body = await read_bounded(receive, self.max_body)
        if body is None:
            await send_too_large(send, self.max_body, extra)
            return
        if head.not_json is not False:
            # Inside NoStore on the rest of the API (as the 413 is outside it).
            await send_unsupported(send, head.not_json, [_NO_STORE, rid_header])
            return
        try:
            principal = await self._authenticate(head.authorization)
            items = self._items(tenant, batch, head.content_type, body)
            if items is None:
                await self.fallback(scope, replay(body, receive), _with_header(send, rid_header))
                return
            principal.require(Right.SIGN, tenant)
            out = await self._sign(tenant, items, batch)
        except KeyturnError as exc:
            await self._problem(send, exc, rid_header)
            return
        except Exception:
            log.exception("POST %s failed", scope["path"])
            await _send(send, 500, problem(500, "internal error", "internal_error"), extra)
            return
        observer = self.observer
        if observer is not None:
            for token, _claims in out:
                observer.signed(tenant, token)
        if batch:
            payload = orjson.dumps({"items": [{"token": t, "claims": c} for t, c in out]})
        else:
            token, claims = out[0]
            payload = orjson.dumps({"token": token, "claims": claims})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    *_JSON_HEADERS,
                    (b"content-length", str(len(payload)).encode()),
                    rid_header,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _authenticate(self, authorization: bytes | None) -> Principal:
        """As ``keyturn.server.auth.authenticate``, from the cache: the same three messages."""
        if not authorization:
            raise AuthError(NO_KEY)
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(NOT_BEARER)
        parsed = parse_token(token)
        if parsed is None:
            raise AuthError(BAD_KEY)
        key_id, secret = parsed
        keys = self.keys
        entry: CachedKey | None = keys.peek(key_id)
        if entry is None:
            entry = await self._once(("key", key_id), keys.load, key_id)
        elif keys.clock.monotonic() - entry.checked > keys.revalidate_after / 2:
            # Refresh ahead, off the request: the entry is re-read before it goes stale.
            self._start(("key", key_id), keys.load, key_id)
        assert entry is not None
        key = keys.check(entry, secret)
        if key is None:
            raise AuthError(BAD_KEY)
        self.keys.usage.record(key_id)
        return Principal(key)

    @staticmethod
    def _items(
        tenant: str, batch: bool, content_type: bytes | None, body: bytes
    ) -> list[Item] | None:
        if len(tenant) > 63 or _TENANT.fullmatch(tenant) is None:
            return None
        if content_type is not None and not _json_media(content_type):
            return None
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if batch:
            return parse_batch(parsed)
        item = parse_sign(parsed)
        return None if item is None else [item]

    async def _sign(
        self, tenant: str, items: list[Item], batch: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        warm = self.warm(tenant)
        if warm is None:
            # Not prepared, or due for its key_version re-check: one read for all waiters.
            await self._once(("tenant", tenant), self.prepare, tenant)
            warm = self.warm(tenant)
        else:
            self._keep_warm(tenant)
        inline = (
            warm is not None
            and warm[0] in self.inline_algs
            and len(items) <= INLINE_BATCH
            and (self.published is None or self.published(tenant, warm[1], warm[2]))
        )
        if batch:
            if inline:
                return sign_items(self.sign, tenant, items)
            done: list[tuple[str, dict[str, Any]]] = await anyio.to_thread.run_sync(
                sign_items, self.sign, tenant, items
            )
            return done
        claims, ttl = items[0]
        if inline:
            return [self.sign(tenant, claims, ttl=ttl)]
        one = await anyio.to_thread.run_sync(partial(self.sign, tenant, claims, ttl=ttl))
        return [one]

    def _start(
        self, key: tuple[str, str], fn: Callable[[str], Any], arg: str
    ) -> asyncio.Future[Any]:
        """``fn(arg)`` in a thread, unless the same read is already under way."""
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(anyio.to_thread.run_sync(fn, arg))
            self._inflight[key] = fut
            fut.add_done_callback(partial(self._done, key))
        return fut

    def _once(
        self, key: tuple[str, str], fn: Callable[[str], Any], arg: str
    ) -> asyncio.Future[Any]:
        """``fn(arg)`` in a thread, awaited by every caller until it is done (a cancelled
        waiter does not cancel the read the others wait for)."""
        return asyncio.shield(self._start(key, fn, arg))

    async def drain(self) -> None:
        """Wait for the store reads under way in threads, the refresh-ahead ones nobody awaits
        included: after it, no read of this app holds a pooled connection (shutdown, before
        the store's owner disposes it; a connection checked out then is never closed)."""
        while pending := [f for f in self._inflight.values() if not f.done()]:
            await asyncio.wait(pending)

    def _done(self, key: tuple[str, str], fut: asyncio.Future[Any]) -> None:
        self._inflight.pop(key, None)
        if not fut.cancelled():
            fut.exception()  # retrieved: a refresh-ahead nobody awaited must not warn

    def _keep_warm(self, tenant: str) -> None:
        """Re-check the tenant's signer ahead of its revalidation bound, off the request."""
        if self.recheck is None:
            return
        now = asyncio.get_running_loop().time()
        last = self._kicked.get(tenant)
        if last is None:  # first sight (just prepared, or after a restart): the clock starts
            self._kicked[tenant] = now
        elif now - last >= self.keys.revalidate_after / 2:
            self._kicked[tenant] = now
            if len(self._kicked) > 10_000:
                self._kicked.clear()
            self._start(("tenant", tenant), self.recheck, tenant)

    async def _problem(
        self, send: Send, exc: KeyturnError, rid_header: tuple[bytes, bytes]
    ) -> None:
        if self.observer is not None and isinstance(exc, StoreUnavailableError):
            self.observer.store_error("write")
        status, body = problem_for(exc)
        if status >= 500:
            log.error("POST sign: %s [%s]", exc.detail, exc.code)
        extra = [(b"www-authenticate", REALM.encode())] if status == 401 else []
        extra.append(rid_header)
        await _send(send, status, body, extra)


async def _send(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]]
) -> None:
    await send_problem(send, status, body, [_NO_STORE, *extra])


def _with_header(send: Send, header: tuple[bytes, bytes]) -> Send:
    """``send`` with ``header`` on the response, in place of one the app set (as RequestId)."""

    async def send_with(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
            message = {**message, "headers": [*headers, header]}
        await send(message)

    return send_with
