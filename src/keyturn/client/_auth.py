"""``RefreshingAuth``: an ``httpx.Auth`` that keeps a token pair fresh, single flight.

On a 401 whose challenge says a new token can help (``keyturn_action="try_refresh"`` or
``"refresh"``, or a plain RFC 6750 ``error="invalid_token"``), or when the access token is
about to expire, the auth refreshes once through the token endpoint and retries the request
once. However many threads and asyncio tasks hit the 401 at the same moment, one refresh is
made: the others wait for it and use its result. This matters beyond efficiency: refresh tokens
rotate on every use, so a second refresh with the same token would be a *reuse* and the
server would revoke the session.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Literal
from urllib.parse import quote_plus, urlsplit

import httpx
import orjson

from keyturn.client._tokens import RefreshError, TokenPair

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
DEFAULT_REFRESH_LEEWAY = 10.0  # seconds before expiry at which the pair is renewed up front
DEFAULT_WAIT_TIMEOUT = 30.0  # longest a caller waits for another caller's refresh
MAX_RESPONSE = 64 * 1024
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def refresh_hint(response: httpx.Response) -> bool:
    """Whether a 401 says a new access token can help."""
    if response.status_code != 401:
        return False
    challenge = response.headers.get("www-authenticate", "")
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    params = {m.group(1).lower(): m.group(2) or m.group(3) for m in _PARAM.finditer(rest)}
    action = params.get("keyturn_action")
    if action is not None:
        return action in ("try_refresh", "refresh")
    # Any RFC 6750 resource server: invalid_token means expired, revoked or unknown key.
    return params.get("error") == "invalid_token"


class _Flight:
    """One refresh in progress; sync and async callers wait for its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ok = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def finish(self, ok: bool) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._ok = ok
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout) and self._ok

    async def wait_async(self, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done.is_set():
                return self._ok
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, seconds)
        except TimeoutError:
            return False
        return self._ok


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class RefreshingAuth(httpx.Auth):
    """Authorize requests with a token pair and renew it through the token endpoint.

    ``tokens``: the pair to start with (e.g. from keyturn's ``POST .../sessions``).
    ``token_url``: the token endpoint (discovery's ``token_endpoint``); HTTPS unless loopback.
    ``client_id`` / ``client_secret`` / ``auth_method``: how this client authenticates there
    (a public app: no secret, ``"none"``). ``on_refresh(pair)`` runs after each renewal, e.g.
    to persist the new pair: the old refresh token is dead once used. ``refresh_leeway``:
    renew up front when the access token expires within this many seconds.

    After a refresh refused with ``invalid_grant`` the session is over: requests go out with
    the old token and their 401 reaches the caller; :attr:`ended` says so, ``set_tokens``
    starts again. Works with ``httpx.Client`` and ``httpx.AsyncClient`` (asyncio).
    """

    requires_request_body = True  # the request is sent again after a refresh

    def __init__(
        self,
        tokens: TokenPair,
        *,
        token_url: str,
        client_id: str,
        client_secret: str | None = None,
        auth_method: AuthMethod | None = None,
        refresh_leeway: float = DEFAULT_REFRESH_LEEWAY,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_refresh: Callable[[TokenPair], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(token_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("token_url must be an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            # The refresh token is a long-lived secret: never over plain HTTP off this host.
            raise ValueError("token_url must use HTTPS (plain HTTP only on loopback)")
        if not client_id:
            raise ValueError("client_id is required")
        method: AuthMethod = auth_method or (
            "client_secret_basic" if client_secret is not None else "none"
        )
        if (method == "none") != (client_secret is None):
            raise ValueError("a client secret goes with client_secret_basic or _post only")
        if not refresh_leeway >= 0 or not wait_timeout > 0:
            raise ValueError("refresh_leeway must be >= 0 and wait_timeout > 0")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.auth_method = method
        self.refresh_leeway = refresh_leeway
        self.wait_timeout = wait_timeout
        self.on_refresh = on_refresh
        self.clock = clock
        self._lock = threading.Lock()
        self._pair = tokens
        self._generation = 0
        self._flight: _Flight | None = None
        self._ended: RefreshError | None = None
        self.refreshes = 0  # successful refreshes made by this auth
        self.refresh_failures = 0

    # --- state -----------------------------------------------------------------------------
    @property
    def tokens(self) -> TokenPair:
        with self._lock:
            return self._pair

    @property
    def ended(self) -> RefreshError | None:
        """Why the session ended (a final refresh refusal), or None while it lives."""
        with self._lock:
            return self._ended

    def set_tokens(self, tokens: TokenPair) -> None:
        """Start over with a new pair (e.g. after the user signed in again)."""
        with self._lock:
            self._pair = tokens
            self._generation += 1
            self._ended = None

    def _snapshot(self) -> tuple[TokenPair, int]:
        with self._lock:
            return self._pair, self._generation

    def _expiring(self, pair: TokenPair) -> bool:
        return pair.expires_at is not None and pair.expires_at - self.clock() <= self.refresh_leeway

    def _begin(
        self, generation: int
    ) -> tuple[Literal["fresh", "lead", "follow", "ended"], _Flight | None]:
        """Lead a refresh, follow the one in flight, or see that one already replaced ours."""
        with self._lock:
            if self._generation != generation:
                return "fresh", None
            if self._ended is not None:
                return "ended", None
            if self._flight is None:
                self._flight = _Flight()
                return "lead", self._flight
            return "follow", self._flight

    def _refresh_request(self) -> httpx.Request:
        with self._lock:
            refresh = self._pair.refresh_token
        data = {"grant_type": "refresh_token", "refresh_token": refresh}
        headers = {"accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            assert self._secret is not None
            # RFC 6749 section 2.3.1: form-encode id and secret, then base64.
            raw = f"{quote_plus(self.client_id)}:{quote_plus(self._secret)}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            data["client_id"] = self.client_id
            if self.auth_method == "client_secret_post":
                assert self._secret is not None
                data["client_secret"] = self._secret
        return httpx.Request("POST", self.token_url, data=data, headers=headers)

    def _complete(self, flight: _Flight, response: httpx.Response | None) -> bool:
        """Apply the token endpoint's answer (None: no answer); wake every waiter."""
        pair: TokenPair | None = None
        failure: RefreshError | None = None
        if response is None:
            failure = RefreshError("the refresh did not complete")
        else:
            try:
                pair = self._parse(response)
            except RefreshError as exc:
                failure = exc
        with self._lock:
            self._flight = None
            if pair is not None:
                self._pair = pair
                self._generation += 1
                self.refreshes += 1
            else:
                self.refresh_failures += 1
                if failure is not None and failure.final:
                    self._ended = failure
        flight.finish(pair is not None)
        if pair is not None and self.on_refresh is not None:
            self.on_refresh(pair)
        return pair is not None

    def _parse(self, response: httpx.Response) -> TokenPair:
        body = response.content
        if len(body) > MAX_RESPONSE:
            raise RefreshError("the token response is too large")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if response.status_code != 200:
            error = data.get("error") if isinstance(data, dict) else None
            code = error if isinstance(error, str) else None
            raise RefreshError(
                f"refresh refused: HTTP {response.status_code} {code or ''}".rstrip(),
                error=code,
                final=code == "invalid_grant",
            )
        if not isinstance(data, dict):
            raise RefreshError("the token response is not a JSON object")
        return TokenPair.from_response(
            data, now=self.clock(), previous_refresh=self.tokens.refresh_token
        )

    @staticmethod
    def _authorize(request: httpx.Request, pair: TokenPair) -> None:
        request.headers["Authorization"] = f"Bearer {pair.access_token}"

    # --- flows -----------------------------------------------------------------------------
    # A flow's refresh step ends in one of: "fresh" (another caller's refresh already replaced
    # the token this request used), "led" (this flow sent the refresh request, whatever its
    # outcome: httpx's last response is now the token endpoint's, so the request must go out
    # again), "followed" (waited for another caller's refresh, which worked), "failed".

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        pair, generation = self._snapshot()
        if self._expiring(pair):
            yield from self._sync_refresh(generation)
            pair, generation = self._snapshot()
        self._authorize(request, pair)
        response = yield request
        if not refresh_hint(response):
            return
        step = yield from self._sync_refresh(generation)
        if step == "failed":
            return  # no new token and nothing sent since: the caller gets this 401
        self._authorize(request, self._snapshot()[0])
        yield request

    def _sync_refresh(self, generation: int) -> Generator[httpx.Request, httpx.Response, str]:
        role, flight = self._begin(generation)
        if role == "fresh":
            return "fresh"
        if role == "ended" or flight is None:
            return "failed"
        if role == "follow":
            return "followed" if flight.wait(self.wait_timeout) else "failed"
        answer: httpx.Response | None = None
        try:
            response = yield self._refresh_request()
            response.read()
            answer = response
        finally:
            # Also when the flow is closed mid-refresh (a transport error): waiters wake.
            self._complete(flight, answer)
        return "led"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        pair, generation = self._snapshot()
        if self._expiring(pair):
            role, flight = self._begin(generation)
            if role == "lead" and flight is not None:
                answer: httpx.Response | None = None
                try:
                    response = yield self._refresh_request()
                    await response.aread()
                    answer = response
                finally:
                    self._complete(flight, answer)
            elif role == "follow" and flight is not None:
                await flight.wait_async(self.wait_timeout)
            pair, generation = self._snapshot()
        self._authorize(request, pair)
        response = yield request
        if not refresh_hint(response):
            return
        role, flight = self._begin(generation)
        if role == "ended" or (role != "fresh" and flight is None):
            return
        if role == "follow" and flight is not None:
            if not await flight.wait_async(self.wait_timeout):
                return
        elif role == "lead" and flight is not None:
            answer = None
            try:
                refreshed = yield self._refresh_request()
                await refreshed.aread()
                answer = refreshed
            finally:
                self._complete(flight, answer)
        self._authorize(request, self._snapshot()[0])
        yield request
