"""``create_app``: the public hot path in front, the FastAPI management API behind it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, Literal, Protocol

import anyio.to_thread
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyturn.config import Settings
from keyturn.errors import KeyturnError, StoreUnavailableError
from keyturn.scheduler import Scheduler
from keyturn.server.admin import build_admin
from keyturn.server.api import ApiContext, ApiObserver, build_router
from keyturn.server.auth import REALM
from keyturn.server.documents import DEFAULT_MAX_TENANTS, DiscoveryExtra, DocumentCache
from keyturn.server.feed import DEFAULT_KEEPALIVE, DEFAULT_MAX_LIFETIME, RevocationHub
from keyturn.server.guards import DEFAULT_MAX_BODY, BodyLimit, JsonOnly, NoStore, add_method_errors
from keyturn.server.keycache import ApiKeyCache
from keyturn.server.logs import RequestId
from keyturn.server.models import Health, Problem
from keyturn.server.oauth import OAuthApp
from keyturn.server.problems import PROBLEM_CONTENT_TYPE, problem, problem_for
from keyturn.server.public import ASGIApp, PublicApp, PublicObserver, Receive, Scope, Send
from keyturn.server.sessions_api import build_sessions_router
from keyturn.server.signfast import SignFastApp, SignRoutes
from keyturn.server.watch import DEFAULT_POLL_INTERVAL, Watcher, default_watchers
from keyturn.service import KeyService, Outcome
from keyturn.sessions.service import SessionService
from keyturn.store.apikeys import APIKEY_NOTIFY_PREFIX, ApiKeyStore

log = logging.getLogger("keyturn.server")


class Metrics(PublicObserver, ApiObserver, Protocol):
    """The hook for Prometheus metrics (:class:`keyturn.server.metrics.ServerMetrics`).

    Hot-path counts, API and scheduler events, store failures, and the ASGI app at /metrics.
    """

    def scheduler_run(self, results: list[Outcome], exc: Exception | None) -> None: ...

    def store_error(self, operation: Literal["read", "write"]) -> None: ...

    def endpoint(self) -> ASGIApp: ...


class ExactPath:
    """ASGI: requests for exactly ``path`` go to ``app``, everything else to ``fallback``."""

    def __init__(self, path: str, app: ASGIApp, fallback: ASGIApp) -> None:
        self.path = path
        self.app = app
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await self.app(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def _install_error_handlers(app: FastAPI, metrics: Metrics | None) -> None:
    async def keyturn_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyturnError)
        if metrics is not None and isinstance(exc, StoreUnavailableError):
            metrics.store_error("read" if request.method in ("GET", "HEAD") else "write")
        status, body = problem_for(exc)
        headers = {"WWW-Authenticate": REALM} if status == 401 else None
        if status >= 500:
            log.error("%s %s: %s [%s]", request.method, request.url.path, exc.detail, exc.code)
        return problem_response(status, body, headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Only where and what: never echo the input (it may be a password or a token).
        errors: list[dict[str, Any]] = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "invalid request"
        if errors:
            loc, msg = errors[0]["loc"], errors[0]["msg"]
            detail = f"{'.'.join(loc)}: {msg}" if loc else msg
        return problem_response(422, problem(422, detail, "invalid_input", errors=errors))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if status == 400:
            # FastAPI's "error parsing the body" (e.g. not UTF-8): invalid input like any other,
            # so one status (422) and one code for every malformed request.
            status, detail = 422, f"body: {detail}"
        code = {404: "not_found", 405: "method_not_allowed", 422: "invalid_input"}.get(
            status, "http_error"
        )
        return problem_response(status, problem(status, detail, code), dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Logged by the server with its traceback; the client sees a code, never the trace.
        return problem_response(500, problem(500, "internal error", "internal_error"))

    app.add_exception_handler(KeyturnError, keyturn_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


def _problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Document every error response as ``application/problem+json`` with the Problem schema."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        ref = {"$ref": "#/components/schemas/Problem"}
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                statuses = ["422", "503", "500"]
                if path.startswith("/api/"):
                    statuses += ["401", "403", "404", "409", "413"]
                if path == "/readyz":
                    statuses = ["503", "500"]
                for st in statuses:
                    responses[st] = {
                        "description": _DESCRIPTIONS[st],
                        "content": {PROBLEM_CONTENT_TYPE: {"schema": ref}},
                    }
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = schema
        return schema

    return openapi


_DESCRIPTIONS = {
    "401": "missing or invalid API key",
    "403": "the API key lacks the right for this tenant or action",
    "404": "no such tenant or key",
    "409": "conflicts with the current state (concurrent change, invalid transition, exists)",
    "413": "request body too large",
    "422": "invalid input or unsafe policy",
    "500": "internal error",
    "503": "the key store is unavailable",
}


class KeyturnApp:
    """The ASGI application ``create_app`` returns, with its parts exposed for operators/tests."""

    def __init__(
        self,
        *,
        public: PublicApp,
        api: FastAPI,
        cache: DocumentCache,
        hub: RevocationHub,
        service: KeyService,
        watchers: Sequence[Watcher],
        scheduler: Scheduler | None,
        handle_signals: bool,
        key_cache: ApiKeyCache | None = None,
        front: ASGIApp | None = None,
        sign_fast: SignFastApp | None = None,
    ) -> None:
        self.key_cache = key_cache
        self.sign_fast = sign_fast
        self.front: ASGIApp = front or public  # what a request enters first
        self.public = public
        self.api = api
        self.cache = cache
        self.hub = hub
        self.service = service
        self.watchers = list(watchers)
        self.scheduler = scheduler
        self.handle_signals = handle_signals
        self.started = False
        self._old_handlers: dict[int, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)

    def notify(self, name: str | None) -> None:
        """A tenant's keys changed, or (None) any may have: drop documents and prepared keys.

        ``apikey:<key id>`` (the same channel): that API key changed; drop it from the cache.
        """
        if name is not None and name.startswith(APIKEY_NOTIFY_PREFIX):
            if self.key_cache is not None:
                self.key_cache.invalidate(name[len(APIKEY_NOTIFY_PREFIX) :])
            return
        if name is None and self.key_cache is not None:
            self.key_cache.invalidate(None)
        self.service.invalidate(name)
        if name is None:
            self.cache.invalidate_all()
        else:
            self.cache.invalidate(name)

    async def startup(self) -> None:
        self.hub.bind(asyncio.get_running_loop())
        for w in self.watchers:
            await anyio.to_thread.run_sync(w.start, self.notify)
        if self.scheduler is not None:
            self.scheduler.start()
        if self.handle_signals:
            self._chain_signals()
        self.started = True

    async def shutdown(self) -> None:
        self.hub.close()
        if self.scheduler is not None:
            await anyio.to_thread.run_sync(self.scheduler.stop)
        for w in self.watchers:
            await anyio.to_thread.run_sync(w.stop)
        # Nothing of this app uses the store once shutdown returns: the caller may dispose it.
        if self.sign_fast is not None:
            await self.sign_fast.drain()
        if self.key_cache is not None:
            await anyio.to_thread.run_sync(self.key_cache.usage.close)
        self.started = False

    def _chain_signals(self) -> None:
        """End SSE streams as soon as shutdown starts (uvicorn waits for open responses).

        uvicorn installs its handlers before the lifespan starts; we run ours first, then its.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(
                signum: int, frame: FrameType | None, _prev: Callable[..., Any] = previous
            ) -> None:
                self.hub.close_threadsafe()
                _prev(signum, frame)

            self._old_handlers[sig] = previous
            signal.signal(sig, handler)


def create_app(
    settings: Settings,
    service: KeyService,
    *,
    api_keys: ApiKeyStore | None = None,
    watchers: Sequence[Watcher] | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    scheduler_interval: float | None = None,
    max_tenants: int = DEFAULT_MAX_TENANTS,
    max_body: int = DEFAULT_MAX_BODY,
    keepalive: float = DEFAULT_KEEPALIVE,
    stream_max_lifetime: float = DEFAULT_MAX_LIFETIME,
    discovery_extra: DiscoveryExtra | None = None,
    metrics: Metrics | None = None,
    handle_signals: bool = False,
    fast_sign: bool = True,
) -> KeyturnApp:
    """Build the keyturn HTTP application on an open service.

    ``watchers``: None runs a :class:`PollingWatcher` every ``poll_interval`` seconds, plus a
    LISTEN/NOTIFY :class:`ListenWatcher` on PostgreSQL; pass a list to choose, ``[]`` for none.
    ``scheduler_interval``: run the rotation scheduler in the lifespan (None: do not).
    ``discovery_extra``: discovery fields per tenant name (``"*"``: every tenant), e.g. the
    ``token_endpoint`` of the authorization server that signs through keyturn.
    Watchers and the scheduler start in the ASGI lifespan (or :meth:`KeyturnApp.startup`).
    ``fast_sign``: serve the sign routes from :class:`SignFastApp` (False: FastAPI only, the
    reference the fast path is tested against).
    """
    api_keys = api_keys or service.api_keys()
    cache = DocumentCache(
        service, settings, max_tenants=max_tenants, discovery_extra=discovery_extra
    )
    hub = RevocationHub(cache, keepalive=keepalive, max_lifetime=stream_max_lifetime)
    if watchers is None:
        watchers = default_watchers(service.store, interval=poll_interval, cached=cache.versions)
    scheduler = (
        Scheduler(
            service,
            interval=scheduler_interval,
            on_sweep=metrics.scheduler_run if metrics is not None else None,
        )
        if scheduler_interval is not None
        else None
    )

    # Local commits invalidate at once, before the API call that made them returns.
    previous_hook = service.on_change

    def on_change(name: str) -> None:
        cache.invalidate(name)
        if previous_hook is not None:
            previous_hook(name)

    service.on_change = on_change
    # A token never leaves before this server's own JWKS publishes its kid.
    service.before_sign = cache.ensure_published

    holder: dict[str, KeyturnApp] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await holder["app"].startup()
        try:
            yield
        finally:
            await holder["app"].shutdown()

    api = FastAPI(
        title="keyturn",
        version="1",
        summary="JWT signing-key rotation: tenants, keys, tokens, plan, audit.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    _install_error_handlers(api, metrics)
    # The one sign step of every sign route (FastAPI's and the fast path's).
    sign_step = service.sign
    ctx = ApiContext(service, api_keys, settings, metrics, sign=sign_step)
    router = build_router(ctx)
    add_method_errors(router)
    api.include_router(router)
    sessions = SessionService(service)
    sessions_router = build_sessions_router(ctx, sessions)
    add_method_errors(sessions_router)
    api.include_router(sessions_router)
    # Operators' HTML pages. The session key derives from the active master key, so every
    # worker and replica accepts the same sessions (a random per-process key would sign an
    # operator out whenever the load balancer picks another process); a master-key rotation
    # signs everybody out, as it should.
    session_key = hmac.new(
        service.sealer.keys[0].secret, b"keyturn admin session key v1", hashlib.sha256
    ).digest()
    api.mount(
        "/admin",
        build_admin(service, api_keys, session_key=session_key, issuer_for=settings.issuer_for),
    )

    @api.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is alive (no dependency is checked)."""
        return Health(status="ok")

    @api.get("/readyz", response_model=Health, tags=["health"])
    async def readyz() -> Response | Health:
        """The store answers, the default tenant's keys are loaded, and every key backend
        (PKCS#11 token) answers and holds each tenant's current key."""
        try:
            await anyio.to_thread.run_sync(service.key_versions)
            docs = await cache.get(settings.default_tenant, priority=True)
            await anyio.to_thread.run_sync(service.check_key_backends)
        except Exception as exc:
            # Unauthenticated: say only that the store or the keys are not available. The
            # details (host, port, database name, token labels) go to the log.
            store_down = isinstance(exc, StoreUnavailableError) or not isinstance(exc, KeyturnError)
            if metrics is not None and store_down:
                metrics.store_error("read")
            log.warning("readyz: not ready: %s", getattr(exc, "detail", type(exc).__name__))
            if store_down:
                body = problem(503, "not ready: the key store does not answer", "store_unavailable")
            else:
                code = exc.code if isinstance(exc, KeyturnError) else "not_ready"
                body = problem(503, "not ready: the signing keys are not available", code)
            return problem_response(503, body)
        if docs is None or docs.jwks.body == b'{"keys":[]}':
            return problem_response(
                503, problem(503, "the default tenant has no published keys", "not_ready")
            )
        try:
            # Signing needs the current key unsealed: a master key this process lacks makes
            # every sign fail, so the process is not ready (the load balancer sends elsewhere).
            await anyio.to_thread.run_sync(service.prepared, settings.default_tenant)
        except KeyturnError as exc:
            # Unauthenticated: no file names or key ids here; the detail goes to the log.
            log.warning("readyz: not ready: %s", exc.detail)
            return problem_response(
                503,
                problem(503, "not ready: the current signing key cannot be unsealed", exc.code),
            )
        return Health(status="ready")

    api.openapi = _problem_openapi(api)  # type: ignore[method-assign]
    # API requests get a request id (logs, X-Request-ID); the public hot path does not.
    fallback: ASGIApp = RequestId(BodyLimit(NoStore(JsonOnly(api)), max_body))
    if metrics is not None:
        # Outside FastAPI: answered at /metrics exactly (a mount would redirect to /metrics/).
        fallback = ExactPath("/metrics", metrics.endpoint(), fallback)
    # The OAuth token and revocation endpoints: bare ASGI, in front of the API.
    fallback = OAuthApp(sessions, fallback, default_tenant=settings.default_tenant)
    public = PublicApp(
        cache,
        hub,
        fallback,
        default_tenant=settings.default_tenant,
        observer=metrics,
    )
    key_cache: ApiKeyCache | None = None
    front: ASGIApp | None = None
    fast: SignFastApp | None = None
    if fast_sign:
        # The sign routes first, before the public paths are even looked at; the same request
        # id and body limit as the API, and FastAPI behind for every case it does not take.
        key_cache = ApiKeyCache(api_keys, service.clock, revalidate_after=service.revalidate_after)
        fast = SignFastApp(
            api,
            keys=key_cache,
            sign=sign_step,
            warm=service.warm_signer,
            prepare=service.prepared,
            recheck=service.recheck,
            published=cache.serves,
            observer=metrics,
            max_body=max_body,
        )
        front = SignRoutes(fast, public)
    app = KeyturnApp(
        public=public,
        api=api,
        cache=cache,
        hub=hub,
        service=service,
        watchers=watchers,
        scheduler=scheduler,
        handle_signals=handle_signals,
        key_cache=key_cache,
        front=front,
        sign_fast=fast,
    )
    holder["app"] = app
    return app


__all__ = ["BodyLimit", "ExactPath", "KeyturnApp", "Metrics", "create_app"]
