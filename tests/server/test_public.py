"""The public hot path in-process: JWKS, discovery, revocations; caching headers; invalidation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import httpx
import orjson
import pytest

from keyturn.clock import FakeClock
from keyturn.config import Settings
from keyturn.keys.algorithms import Alg
from keyturn.keys.sealing import Sealer
from keyturn.ring.model import Policy
from keyturn.server.app import KeyturnApp, create_app
from keyturn.server.documents import CacheBusyError, DocumentCache
from keyturn.server.public import if_none_match, route
from keyturn.server.watch import PollingWatcher
from keyturn.service import KeyService
from keyturn.store.sql import SqlStore
from tests.waiting import async_wait_until

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

JWKS = "/.well-known/jwks.json"
DISCOVERY = "/.well-known/openid-configuration"


async def test_jwks_headers_and_body(client: httpx.AsyncClient, ready_service: KeyService) -> None:
    r = await client.get(JWKS)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk-set+json"
    assert r.headers["cache-control"] == "public, max-age=600"
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert int(r.headers["content-length"]) == len(r.content)
    body = r.json()
    assert body == ready_service.jwks("default")
    assert len(body["keys"]) == 2  # current and next
    for jwk in body["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("{etag}", id="exact"),
        pytest.param("W/{etag}", id="weak-form"),
        pytest.param('"other", {etag}', id="list"),
        pytest.param('"a",W/"b" ,  {etag} ', id="list-spaces"),
        pytest.param("*", id="star"),
    ],
)
async def test_if_none_match_gives_304(client: httpx.AsyncClient, header: str) -> None:
    etag = (await client.get(JWKS)).headers["etag"]
    r = await client.get(JWKS, headers={"If-None-Match": header.format(etag=etag)})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] == "public, max-age=600"


@pytest.mark.parametrize("header", ['"nope"', 'W/"nope"', "garbage", '"unterminated', ""])
async def test_if_none_match_mismatch_gives_200(client: httpx.AsyncClient, header: str) -> None:
    r = await client.get(JWKS, headers={"If-None-Match": header})
    assert r.status_code == 200
    assert r.json()["keys"]


def test_if_none_match_parser() -> None:
    tag = b'"abc"'
    assert if_none_match(b'"x", "abc"', tag)
    assert if_none_match(b'W/"abc"', tag)
    assert not if_none_match(b'"abcd"', tag)
    assert not if_none_match(b'"ab,c"', tag)
    assert if_none_match(b'"a,b", "abc"', tag)  # a comma inside a tag is not a separator


async def test_head_has_headers_without_body(client: httpx.AsyncClient) -> None:
    get = await client.get(JWKS)
    head = await client.head(JWKS)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "cache-control", "content-type", "content-length"):
        assert head.headers[name] == get.headers[name]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_405(client: httpx.AsyncClient, method: str) -> None:
    r = await client.request(method, JWKS)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    [
        "/t/nosuch/.well-known/jwks.json",
        "/t/nosuch/.well-known/openid-configuration",
        "/t/nosuch/revocations.json",
        "/t/nosuch/revocations/stream",
        "/t/NOT_VALID/.well-known/jwks.json",
        "/t/" + "a" * 80 + "/.well-known/jwks.json",
    ],
)
async def test_unknown_tenant_404_reveals_nothing(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["cache-control"] == "no-store"
    # The same body whatever was asked: no tenant names, no hints.
    assert r.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such document",
        "code": "not_found",
    }


def test_route_table() -> None:
    assert route("/.well-known/jwks.json", "default") == ("default", "jwks")
    assert route("/revocations/stream", "default") == ("default", "stream")
    assert route("/t/acme/revocations.json", "default") == ("acme", "revocations")
    assert route("/t/acme/.well-known/openid-configuration", "d") == ("acme", "discovery")
    assert route("/t//.well-known/jwks.json", "default") is None
    assert route("/t/acme/.well-known/jwks.json/x", "default") is None
    assert route("/api/v1/tenants", "default") is None


async def test_tenant_paths_and_discovery(
    client: httpx.AsyncClient, ready_service: KeyService
) -> None:
    ready_service.create_tenant(
        "acme",
        issuer=f"{PUBLIC_URL}/t/acme",
        policy=Policy(alg=Alg.ES256, jwks_max_age=300),
        actor="test",
    )
    r = await client.get("/t/acme/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
    assert {k["alg"] for k in r.json()["keys"]} == {"ES256"}
    d = (await client.get("/t/acme/.well-known/openid-configuration")).json()
    base = f"{PUBLIC_URL}/t/acme"
    assert d["issuer"] == base
    assert d["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert d["id_token_signing_alg_values_supported"] == ["ES256"]
    assert d["keyturn_revocations_uri"] == f"{base}/revocations.json"
    assert d["keyturn_revocations_stream_uri"] == f"{base}/revocations/stream"
    root = (await client.get(DISCOVERY)).json()
    assert root["issuer"] == PUBLIC_URL
    assert root["jwks_uri"] == f"{PUBLIC_URL}/.well-known/jwks.json"
    # /t/default/... serves the default tenant too.
    same = await client.get("/t/default/.well-known/jwks.json")
    assert same.headers["etag"] == (await client.get(JWKS)).headers["etag"]


async def test_discovery_passes_authlib_validation(
    client: httpx.AsyncClient, ready_service: KeyService, settings: Settings
) -> None:
    """keyturn's discovery passes Authlib's full validate(), token endpoint included (it used to
    lack one: keyturn had no token endpoint before sessions); an operator's
    --oidc-metadata still overrides it, e.g. for an authorization server signing through
    keyturn."""
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
    from authlib.oidc.discovery import OpenIDProviderMetadata

    doc = (await client.get(DISCOVERY)).json()
    OpenIDProviderMetadata(doc).validate()
    AuthorizationServerMetadata(doc).validate()
    assert doc["token_endpoint"] == f"{PUBLIC_URL}/oauth/token"

    extra = {"*": {"token_endpoint": "https://auth.example.test/oauth/token"}}
    app2 = create_app(settings, ready_service, watchers=[], discovery_extra=extra)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app2), base_url=PUBLIC_URL
    ) as c2:
        doc2 = (await c2.get(DISCOVERY)).json()
    OpenIDProviderMetadata(doc2).validate()
    assert doc2["token_endpoint"] == "https://auth.example.test/oauth/token"


async def test_revocations_document(client: httpx.AsyncClient, ready_service: KeyService) -> None:
    r = await client.get("/revocations.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "public, max-age=600"
    assert r.json() == {"issuer": PUBLIC_URL, "revoked": []}
    etag = r.headers["etag"]
    assert (
        await client.get("/revocations.json", headers={"If-None-Match": etag})
    ).status_code == 304

    _, ring = ready_service.ring("default")
    nxt = ring.next
    assert nxt is not None
    ready_service.revoke("default", nxt.kid, reason="test leak", actor="test")
    r = await client.get("/revocations.json", headers={"If-None-Match": etag})
    assert r.status_code == 200
    [entry] = r.json()["revoked"]
    assert entry["kid"] == nxt.kid
    assert entry["reason"] == "test leak"
    assert isinstance(entry["revoked_at"], float)


async def test_etag_changes_exactly_when_key_set_changes(
    client: httpx.AsyncClient, ready_service: KeyService, clock: FakeClock
) -> None:
    first = await client.get(JWKS)
    # A policy change that keeps the key set: same tag, new Cache-Control.
    ready_service.set_policy("default", actor="test", jwks_max_age=300.0)
    second = await client.get(JWKS)
    assert second.headers["etag"] == first.headers["etag"]
    assert second.content == first.content
    assert second.headers["cache-control"] == "public, max-age=300"
    # A rotation adds a new next key: new tag.
    clock.advance(3600)
    ready_service.rotate("default", actor="test")
    third = await client.get(JWKS)
    assert third.headers["etag"] != first.headers["etag"]
    assert len(third.json()["keys"]) == 3
    # The old tag no longer matches.
    r = await client.get(JWKS, headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 200
    # A no-op sweep changes nothing: same tag.
    ready_service.sweep()
    assert (await client.get(JWKS)).headers["etag"] == third.headers["etag"]


async def test_no_database_round_trip_per_request(
    client: httpx.AsyncClient, app: KeyturnApp, ready_service: KeyService
) -> None:
    await client.get(JWKS)
    statements: list[str] = []
    ready_service.store.fault_hook = statements.append
    try:
        for _ in range(20):
            assert (await client.get(JWKS)).status_code == 200
            assert (await client.get(DISCOVERY)).status_code == 200
            assert (await client.get("/revocations.json")).status_code == 200
    finally:
        ready_service.store.fault_hook = None
    assert statements == []


async def test_other_process_change_invalidates_via_watcher(
    client: httpx.AsyncClient,
    app: KeyturnApp,
    ready_service: KeyService,
    sealer: Sealer,
    clock: FakeClock,
) -> None:
    """A second KeyService on the same database (as the CLI would be) revokes a key."""
    before = (await client.get(JWKS)).json()
    watcher = PollingWatcher(ready_service.store, cached=app.cache.versions)
    watcher.poll_once(app.notify)  # baseline
    other_store = SqlStore(ready_service.store.url)
    try:
        other = KeyService(other_store, sealer, clock)
        _, ring = other.ring("default")
        assert ring.next is not None
        other.revoke("default", ring.next.kid, reason="cli revoke", actor="cli")
    finally:
        other_store.dispose()
    # This process has not heard of it yet: still cached.
    assert (await client.get(JWKS)).json() == before
    assert watcher.poll_once(app.notify) == ["default"]
    after = (await client.get(JWKS)).json()
    assert ring.next.kid not in {k["kid"] for k in after["keys"]}
    assert watcher.poll_once(app.notify) == []


async def test_watcher_heals_entry_rendered_from_older_version(
    client: httpx.AsyncClient, app: KeyturnApp, ready_service: KeyService
) -> None:
    await client.get(JWKS)
    watcher = PollingWatcher(ready_service.store, cached=app.cache.versions)
    watcher.poll_once(app.notify)
    # Simulate a render that raced a change: the cached version is older than the store's.
    app.cache._docs["default"] = app.cache._docs["default"].__class__(
        **{**_fields(app.cache._docs["default"]), "key_version": 0}
    )
    assert watcher.poll_once(app.notify) == ["default"]
    assert "default" not in app.cache._docs


def _fields(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


async def test_lru_is_bounded(ready_service: KeyService, settings: Settings) -> None:
    for name in ("t1", "t2", "t3"):
        ready_service.create_tenant(
            name, issuer=f"{PUBLIC_URL}/t/{name}", policy=Policy(alg=Alg.EdDSA), actor="t"
        )
    cache = DocumentCache(ready_service, settings, max_tenants=2)
    for name in ("t1", "t2", "t1", "t3"):
        assert await cache.get(name) is not None
    assert len(cache) == 2
    assert cache.peek("t2") is None  # least recently used went first
    assert cache.peek("t1") is not None and cache.peek("t3") is not None


async def test_unknown_tenant_negative_cache_cleared_on_create(
    client: httpx.AsyncClient, ready_service: KeyService
) -> None:
    assert (await client.get("/t/later/.well-known/jwks.json")).status_code == 404
    ready_service.create_tenant(
        "later", issuer=f"{PUBLIC_URL}/t/later", policy=Policy(alg=Alg.EdDSA), actor="t"
    )
    assert (await client.get("/t/later/.well-known/jwks.json")).status_code == 200


async def test_store_down_uncached_tenant_is_503_cached_still_served(
    client: httpx.AsyncClient, ready_service: KeyService
) -> None:
    from keyturn.errors import StoreUnavailableError

    assert (await client.get(JWKS)).status_code == 200

    def down(_stmt: str) -> None:
        raise StoreUnavailableError("test: database down")

    ready_service.store.fault_hook = down
    try:
        assert (await client.get(JWKS)).status_code == 200
        r = await client.get("/t/elsewhere/.well-known/jwks.json")
        assert r.status_code == 503
        assert r.json()["code"] == "store_unavailable"
    finally:
        ready_service.store.fault_hook = None


async def test_jwks_body_is_orjson_of_published_keys(
    client: httpx.AsyncClient, ready_service: KeyService
) -> None:
    r = await client.get(JWKS)
    _, ring = ready_service.ring("default")
    assert r.content == orjson.dumps({"keys": [k.public_jwk for k in ring.published]})


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_listen_notify_invalidates_within_milliseconds(
    ready_service: KeyService, settings: Settings, sealer: Sealer, clock: FakeClock
) -> None:
    """With the poller slowed to a minute, only LISTEN/NOTIFY can deliver the change."""
    import anyio

    from keyturn.server.watch import ListenWatcher

    app = create_app(settings, ready_service, poll_interval=60)
    assert any(isinstance(w, ListenWatcher) for w in app.watchers)
    await app.startup()
    try:
        listen = next(w for w in app.watchers if isinstance(w, ListenWatcher))
        await anyio.to_thread.run_sync(listen.wait_connected, 5.0)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL
        ) as c:
            first = await c.get(JWKS)
            other_store = SqlStore(ready_service.store.url)
            try:
                other = KeyService(other_store, sealer, clock)
                _, ring = other.ring("default")
                assert ring.next is not None
                other.revoke("default", ring.next.kid, reason="replica", actor="cli")
            finally:
                other_store.dispose()
            for _ in range(200):  # up to 2 s; in practice a few milliseconds
                if (await c.get(JWKS)).headers["etag"] != first.headers["etag"]:
                    break
                await anyio.sleep(0.01)
            else:
                pytest.fail("the NOTIFY did not invalidate the cached JWKS within 2 s")
        # Losing the connection means "anything may have changed": everything is dropped.
        app.notify(None)
        assert len(app.cache) == 0
    finally:
        await app.shutdown()


def _limiter_waiting(cache: DocumentCache) -> int:
    limiter = cache._fill_limiter
    return limiter.statistics().tasks_waiting if limiter is not None else 0


async def test_cache_misses_take_bounded_threads_and_a_bounded_queue(
    ready_service: KeyService, settings: Settings
) -> None:
    """Misses for made-up tenant names (no credentials needed) read the store at most
    ``max_fills`` at a time, with at most ``max_waiting_fills`` waiting; more are refused with
    CacheBusyError. A priority fill (a tenant known to exist) skips the queue."""
    cache = DocumentCache(ready_service, settings, max_fills=2, max_waiting_fills=3)
    load = cache._load
    active, peak = 0, 0
    lock = threading.Lock()
    release = threading.Event()
    two_running = threading.Event()

    def slow_load(name: str) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active >= 2:
                two_running.set()
        if name.startswith("nosuch"):
            release.wait(5)
        try:
            return load(name)
        finally:
            with lock:
                active -= 1

    cache._load = slow_load  # type: ignore[method-assign]
    tasks = [asyncio.ensure_future(cache.get(f"nosuch{i}")) for i in range(5)]
    assert await anyio.to_thread.run_sync(two_running.wait, 5.0)
    # The other three fills are queued on the limiter (not merely not yet started).
    await async_wait_until(
        lambda: _limiter_waiting(cache) == 3, what="3 fills waiting for the limiter"
    )
    assert peak == 2
    for i in range(5, 9):  # 2 reading + 3 waiting: the queue is full
        with pytest.raises(CacheBusyError):
            await cache.get(f"nosuch{i}")
    with anyio.fail_after(5):  # a priority fill does not wait behind the flood
        docs = await cache.get("default", priority=True)
    assert docs is not None and docs.name == "default"
    release.set()
    with anyio.fail_after(10):
        assert await asyncio.gather(*tasks) == [None] * 5


async def test_busy_cache_answers_503_with_retry_after(
    ready_service: KeyService, settings: Settings
) -> None:
    app = create_app(settings, ready_service, watchers=[])
    release = threading.Event()
    filling = threading.Event()
    load = app.cache._load

    def blocked(name: str) -> Any:
        filling.set()
        release.wait(5)
        return load(name)

    app.cache._load = blocked  # type: ignore[method-assign]
    app.cache.max_fills, app.cache.max_waiting_fills = 1, 0
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        first = asyncio.ensure_future(client.get("/t/nosuch1/.well-known/jwks.json"))
        assert await anyio.to_thread.run_sync(filling.wait, 5.0)  # it holds the only slot
        r = await client.get("/t/nosuch2/.well-known/jwks.json")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "busy"
        release.set()
        assert (await first).status_code == 404
