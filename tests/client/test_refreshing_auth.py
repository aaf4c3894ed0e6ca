"""keyturn.client.RefreshingAuth over httpx.MockTransport: refresh once on a 401 that says so,
retry once, single flight across threads and asyncio tasks, and a final refusal ends it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from keyturn.client import RefreshingAuth, TokenPair, refresh_hint

TOKEN_URL = "https://id.example.test/oauth/token"
API = "https://api.example.test/orders"
TRY_REFRESH = (
    'Bearer error="invalid_token", error_description="unknown kid", '
    'keyturn_action="try_refresh", keyturn_code="unknown_kid"'
)


class World:
    """A token endpoint that rotates refresh tokens, and an API that accepts one access token."""

    def __init__(self, *, valid: str = "at-1", refresh: str = "rt-1") -> None:
        self.valid = valid
        self.refresh = refresh
        self.n = 1
        self.token_calls: list[dict[str, list[str]]] = []
        self.api_calls = 0
        self.denied = 0
        self.lock = threading.Lock()
        self.gate: Callable[[], None] | None = None  # runs inside the token endpoint
        self.refuse: str | None = None  # an RFC 6749 error to answer with
        self.challenge = TRY_REFRESH

    def handler(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            form = parse_qs(request.content.decode())
            with self.lock:
                self.token_calls.append(form)
            if self.gate is not None:
                self.gate()
            if self.refuse is not None:
                return httpx.Response(400, json={"error": self.refuse})
            with self.lock:
                assert form["refresh_token"] == [self.refresh], "a used refresh token came back"
                self.n += 1
                self.valid, self.refresh = f"at-{self.n}", f"rt-{self.n}"
                body = {
                    "access_token": self.valid,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "refresh_token": self.refresh,
                }
            return httpx.Response(200, content=orjson.dumps(body))
        with self.lock:
            self.api_calls += 1
            ok = request.headers.get("authorization") == f"Bearer {self.valid}"
            if not ok:
                self.denied += 1
        if ok:
            return httpx.Response(200, json={"ok": True, "body": request.content.decode()})
        return httpx.Response(401, headers={"www-authenticate": self.challenge})

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        return await asyncio.to_thread(self.handler, request)


def _auth(**kw: object) -> RefreshingAuth:
    return RefreshingAuth(
        TokenPair("at-old", "rt-1"),
        token_url=TOKEN_URL,
        client_id="ktc_app",
        **kw,  # type: ignore[arg-type]
    )


def test_a_try_refresh_401_is_absorbed_by_one_refresh_and_one_retry() -> None:
    world = World()
    saved: list[TokenPair] = []
    auth = _auth(on_refresh=saved.append)
    with httpx.Client(transport=httpx.MockTransport(world.handler), auth=auth) as http:
        r = http.post(API, content=b"order-1")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "body": "order-1"}  # the body went out again
    assert len(world.token_calls) == 1
    assert world.token_calls[0] == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["rt-1"],
        "client_id": ["ktc_app"],
    }
    assert auth.tokens.access_token == "at-2" and auth.tokens.refresh_token == "rt-2"
    assert [p.refresh_token for p in saved] == ["rt-2"]
    assert auth.refreshes == 1


def test_basic_client_authentication_form_encodes_id_and_secret() -> None:
    world = World()
    auth = _auth(client_secret="s:e+c/ret")
    with httpx.Client(transport=httpx.MockTransport(world.handler), auth=auth) as http:
        assert http.get(API).status_code == 200
    assert "client_id" not in world.token_calls[0]


@pytest.mark.parametrize(
    ("challenge", "refresh"),
    [
        pytest.param(TRY_REFRESH, True, id="try_refresh"),
        pytest.param('Bearer error="invalid_token", keyturn_action="refresh"', True, id="expired"),
        pytest.param('Bearer error="invalid_token"', True, id="plain-rfc6750"),
        pytest.param('Bearer error="invalid_token", keyturn_action="reject"', False, id="reject"),
        pytest.param('Bearer realm="api"', False, id="no-error"),
        pytest.param('Basic realm="x"', False, id="basic"),
    ],
)
def test_which_401s_trigger_a_refresh(challenge: str, refresh: bool) -> None:
    world = World()
    world.challenge = challenge
    with httpx.Client(transport=httpx.MockTransport(world.handler), auth=_auth()) as http:
        r = http.get(API)
    assert (r.status_code == 200) is refresh
    assert len(world.token_calls) == (1 if refresh else 0)
    assert refresh_hint(httpx.Response(401, headers={"www-authenticate": challenge})) is refresh


def test_eight_threads_on_one_401_make_one_refresh() -> None:
    world = World()
    threads = 8
    all_denied = threading.Event()

    def gate() -> None:
        # Hold the refresh until every thread has had its 401: they all race for it.
        assert all_denied.wait(10), "not every thread got its 401"

    world.gate = gate
    auth = _auth()
    results: list[int] = []
    original = world.handler

    def counting(request: httpx.Request) -> httpx.Response:
        response = original(request)
        if response.status_code == 401 and world.denied >= threads:
            all_denied.set()
        return response

    with httpx.Client(transport=httpx.MockTransport(counting), auth=auth) as http:

        def call() -> None:
            results.append(http.get(API).status_code)

        workers = [threading.Thread(target=call) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(20)
    assert results == [200] * threads
    assert len(world.token_calls) == 1
    assert auth.refreshes == 1


def test_eight_tasks_on_one_401_make_one_refresh() -> None:
    world = World()
    tasks = 8

    async def main() -> list[int]:
        all_denied = asyncio.Event()
        loop = asyncio.get_running_loop()

        def gate() -> None:
            fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(all_denied.wait(), 10), loop)
            fut.result(15)

        world.gate = gate

        async def handler(request: httpx.Request) -> httpx.Response:
            response = await world.ahandler(request)
            if response.status_code == 401 and world.denied >= tasks:
                all_denied.set()
            return response

        auth = _auth()
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as http:
            codes = await asyncio.gather(*(http.get(API) for _ in range(tasks)))
        assert auth.refreshes == 1
        return [r.status_code for r in codes]

    assert asyncio.run(main()) == [200] * tasks
    assert len(world.token_calls) == 1


def test_invalid_grant_ends_the_session_and_the_caller_gets_the_401() -> None:
    world = World()
    world.refuse = "invalid_grant"
    auth = _auth()
    with httpx.Client(transport=httpx.MockTransport(world.handler), auth=auth) as http:
        r = http.get(API)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == TRY_REFRESH  # the API's answer, not the IdP's
        assert auth.ended is not None and auth.ended.error == "invalid_grant"
        assert http.get(API).status_code == 401
    assert len(world.token_calls) == 1  # no second attempt with a dead refresh token
    auth.set_tokens(TokenPair(world.valid, world.refresh))
    assert auth.ended is None


def test_a_transient_refusal_does_not_end_the_session() -> None:
    world = World()
    world.refuse = "temporarily_unavailable"
    auth = _auth()
    with httpx.Client(transport=httpx.MockTransport(world.handler), auth=auth) as http:
        assert http.get(API).status_code == 401
        assert auth.ended is None
        world.refuse = None
        assert http.get(API).status_code == 200
    assert auth.refresh_failures == 1 and auth.refreshes == 1


def test_an_expiring_access_token_is_renewed_before_the_request() -> None:
    world = World(valid="at-old")
    now = [1000.0]
    auth = RefreshingAuth(
        TokenPair("at-old", "rt-1", expires_at=1005.0),
        token_url=TOKEN_URL,
        client_id="ktc_app",
        refresh_leeway=10,
        clock=lambda: now[0],
    )
    with httpx.Client(transport=httpx.MockTransport(world.handler), auth=auth) as http:
        assert http.get(API).status_code == 200
    assert world.denied == 0  # renewed up front: the API never saw the old token
    assert auth.tokens.expires_at == 1300.0


def test_async_refresh_on_401() -> None:
    world = World()

    async def main() -> int:
        auth = _auth()
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(world.ahandler), auth=auth
        ) as http:
            return (await http.post(API, content=b"x")).status_code

    assert asyncio.run(main()) == 200
    assert len(world.token_calls) == 1


def test_a_transport_error_during_the_refresh_releases_the_flight() -> None:
    world = World()
    fail = [True]
    original = world.handler

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL and fail[0]:
            raise httpx.ConnectError("token endpoint down")
        return original(request)

    auth = _auth(wait_timeout=1)
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http:
        with pytest.raises(httpx.ConnectError):
            http.get(API)
        fail[0] = False
        assert http.get(API).status_code == 200  # not stuck behind a dead flight


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"token_url": "http://id.example.test/oauth/token"}, id="plain-http"),
        pytest.param({"token_url": "ftp://x/"}, id="scheme"),
        pytest.param({"client_id": ""}, id="no-client"),
        pytest.param({"auth_method": "client_secret_basic"}, id="basic-without-secret"),
        pytest.param({"refresh_leeway": -1}, id="leeway"),
    ],
)
def test_bad_configuration_is_refused(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"token_url": TOKEN_URL, "client_id": "ktc_app", **kw}
    with pytest.raises(ValueError):
        RefreshingAuth(TokenPair("a", "r"), **args)  # type: ignore[arg-type]


def test_loopback_http_is_allowed_and_tokens_are_not_in_repr() -> None:
    RefreshingAuth(TokenPair("a", "r"), token_url="http://127.0.0.1:1/oauth/token", client_id="c")
    assert "secret-value" not in repr(TokenPair("secret-value", "secret-value", 1.0))
