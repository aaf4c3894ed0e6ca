"""The sign routes' fast path (#19): the same answers as FastAPI's, without the store per request.

The reference is the same app built with ``fast_sign=False`` (FastAPI and pydantic only): every
case here is sent to both and the answers compared, so the fast path cannot drift from it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from keyturn.keys.algorithms import Alg
from keyturn.keys.sealing import Sealer
from keyturn.ring.model import Policy
from keyturn.server.app import KeyturnApp
from keyturn.server.metrics import ServerMetrics
from keyturn.service import KeyService
from keyturn.store.apikeys import ApiKeyStore, parse_token
from keyturn.store.sql import SqlStore
from keyturn.tokens.verify import verify_token

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

API = "/api/v1"
SIGN = f"{API}/tenants/default/tokens/sign"
BATCH = f"{API}/tenants/default/tokens/sign-batch"
MakeApp = Callable[..., KeyturnApp]  # conftest's make_app: create_app, shut down at teardown


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def pair(
    make_app: MakeApp, ready_service: KeyService, settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(fast path, FastAPI reference) on the same service."""
    fast = make_app(settings, ready_service, watchers=[])
    ref = make_app(settings, ready_service, watchers=[], fast_sign=False)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=fast), base_url=PUBLIC_URL) as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=ref), base_url=PUBLIC_URL) as b,
    ):
        yield a, b


def _shape(r: httpx.Response) -> tuple[int, str, Any]:
    """Status, media type and body with the per-token parts (jti, iat, exp, nbf) dropped."""
    ctype = r.headers["content-type"]
    body = r.json()
    if r.status_code == 200:
        items = body.get("items", [body])
        for item in items:
            assert item["token"].count(".") == 2
            item["token"] = "<token>"
            for k in ("jti", "iat", "exp", "nbf"):
                item["claims"].pop(k, None)
    return r.status_code, ctype, body


BIG = {"claims": {"x": "a" * 9000}}  # over the 8 KiB claims cap, under the 64 KiB body cap
DEEP: dict[str, Any] = {"claims": {}}
_d = DEEP["claims"]
for _ in range(40):
    _d["n"] = {}
    _d = _d["n"]

CASES: list[tuple[str, str, dict[str, str], bytes | None, Any]] = [
    # (name, path, extra headers, raw body or None, JSON body)
    ("ok", SIGN, {}, None, {"claims": {"sub": "alice", "aud": "svc"}, "ttl": 600}),
    ("ok empty body object", SIGN, {}, None, {}),
    ("ok ttl null", SIGN, {}, None, {"claims": {"sub": "a"}, "ttl": None}),
    ("ok int ttl at the minimum", SIGN, {}, None, {"ttl": 1}),
    ("ttl over T", SIGN, {}, None, {"claims": {}, "ttl": 7200}),
    ("ttl under 1", SIGN, {}, None, {"ttl": 0.5}),
    ("ttl a string", SIGN, {}, None, {"ttl": "600"}),
    ("ttl a bool", SIGN, {}, None, {"ttl": True}),
    ("ttl over ten years", SIGN, {}, None, {"ttl": 1e12}),
    ("claims a list", SIGN, {}, None, {"claims": ["a"]}),
    ("extra field", SIGN, {}, None, {"claims": {}, "kid": "x"}),
    ("body a list", SIGN, {}, None, [1, 2]),
    ("not JSON", SIGN, {"content-type": "application/json"}, b"{nope", None),
    ("empty body", SIGN, {"content-type": "application/json"}, b"", None),
    (
        "NaN ttl (Python's JSON only)",
        SIGN,
        {"content-type": "application/json"},
        b'{"ttl":NaN}',
        None,
    ),
    ("text/plain", SIGN, {"content-type": "text/plain"}, b'{"claims":{}}', None),
    ("nbf absurd", SIGN, {}, None, {"claims": {"nbf": 1e300}}),
    ("exp past", SIGN, {}, None, {"claims": {"exp": 1}}),
    ("exp a string", SIGN, {}, None, {"claims": {"exp": "soon"}}),
    ("iat reserved", SIGN, {}, None, {"claims": {"iat": 5}}),
    ("iss foreign", SIGN, {}, None, {"claims": {"iss": "https://evil.example"}}),
    ("claims too large", SIGN, {}, None, BIG),
    ("claims too deep", SIGN, {}, None, DEEP),
    ("unknown tenant", f"{API}/tenants/nosuch/tokens/sign", {}, None, {"claims": {}}),
    ("bad tenant name", f"{API}/tenants/No_Such/tokens/sign", {}, None, {"claims": {}}),
    ("no auth", SIGN, {"Authorization": ""}, None, {"claims": {}}),
    ("basic auth", SIGN, {"Authorization": "Basic YTpi"}, None, {"claims": {}}),
    ("malformed key", SIGN, {"Authorization": "Bearer kt_nope"}, None, {"claims": {}}),
    (
        "unknown key",
        SIGN,
        {"Authorization": "Bearer kt_0123456789abcdef_" + "A" * 43},
        None,
        {"claims": {}},
    ),
    ("no auth and a bad body", SIGN, {"Authorization": ""}, None, {"ttl": "x"}),
    ("batch ok", BATCH, {}, None, {"items": [{"claims": {"n": i}} for i in range(10)]}),
    ("batch of 100", BATCH, {}, None, {"items": [{}] * 100}),
    ("batch of 101", BATCH, {}, None, {"items": [{}] * 101}),
    ("batch empty", BATCH, {}, None, {"items": []}),
    ("batch no items", BATCH, {}, None, {}),
    ("batch one bad item", BATCH, {}, None, {"items": [{}, {"ttl": "x"}]}),
    ("batch third over T", BATCH, {}, None, {"items": [{}, {}, {"ttl": 7200}, {}]}),
    # The management API's middleware, done by the fast path in its own pass (BodyLimit,
    # JsonOnly, RequestId): the same 413, 415 and request ids.
    (
        "body over 64 KiB",
        SIGN,
        {"content-type": "application/json"},
        b'{"claims":{"x":"' + b"a" * 70_000 + b'"}}',
        None,
    ),
    ("body over 64 KiB, not JSON", SIGN, {"content-type": "text/plain"}, b"a" * 70_000, None),
    ("body over 64 KiB, no auth", SIGN, {"Authorization": ""}, b"{}" + b" " * 70_000, None),
    ("no content type", SIGN, {}, b'{"claims":{}}', None),
    ("no content type, no auth", SIGN, {"Authorization": ""}, b'{"claims":{}}', None),
    ("problem+json type", SIGN, {"content-type": "application/problem+json"}, b"{}", None),
    ("json with charset", SIGN, {"content-type": "application/json; charset=utf-8"}, b"{}", None),
    ("form-encoded", SIGN, {"content-type": "application/x-www-form-urlencoded"}, b"a=b", None),
    ("safe request id", SIGN, {"x-request-id": "trace-0042"}, None, {"claims": {}}),
    ("safe request id, 422", SIGN, {"x-request-id": "trace-0043"}, None, {"ttl": "x"}),
    ("safe request id, 401", SIGN, {"Authorization": "", "x-request-id": "t-44"}, None, {}),
    ("safe request id, 415", SIGN, {"x-request-id": "t-45"}, b"{}", None),
    ("unsafe request id", SIGN, {"x-request-id": "<script>" + "x" * 300}, None, {}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_fast_path_answers_as_fastapi(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    admin: dict[str, str],
    case: tuple[str, str, dict[str, str], bytes | None, Any],
) -> None:
    _name, path, headers, raw, body = case
    h = {**admin, **headers}
    if h.get("Authorization") == "":
        del h["Authorization"]
    kwargs: dict[str, Any] = {"content": raw} if raw is not None else {"json": body}
    fast, ref = pair
    a = await fast.post(path, headers=h, **kwargs)
    b = await ref.post(path, headers=h, **kwargs)
    assert _shape(a) == _shape(b)
    for name in ("www-authenticate", "cache-control", "connection", "accept", "content-length"):
        if name == "content-length" and a.status_code == 200:
            continue  # the token and its jti differ
        assert a.headers.get(name) == b.headers.get(name), name
    assert len(a.headers.get_list("x-request-id")) == 1
    given = headers.get("x-request-id")
    if given is not None and given.startswith(("trace-", "t-")):
        assert a.headers["x-request-id"] == b.headers["x-request-id"] == given
    else:
        assert a.headers["x-request-id"] != given
        assert len(a.headers["x-request-id"]) == len(b.headers["x-request-id"]) == 16


async def test_scoped_keys_and_methods_as_fastapi(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
    ready_service: KeyService,
    api_keys: ApiKeyStore,
) -> None:
    ready_service.create_tenant(
        "acme", issuer="https://acme.example", policy=Policy(alg=Alg.ES256), actor="test"
    )
    viewer = bearer(api_keys.create("viewer", tenant="default", actor="t")[1])
    other = bearer(api_keys.create("signer", tenant="acme", actor="t")[1])
    fast, ref = pair
    for headers in (viewer, other):
        for path in (SIGN, BATCH):
            body = {"items": [{}]} if path == BATCH else {}
            a, b = (
                await fast.post(path, headers=headers, json=body),
                await ref.post(path, headers=headers, json=body),
            )
            assert a.status_code == b.status_code == 403
            assert a.json() == b.json()
    a, b = await fast.get(SIGN, headers=other), await ref.get(SIGN, headers=other)
    assert a.status_code == b.status_code == 405
    assert a.json() == b.json()


async def test_no_store_statement_per_request_in_steady_state(
    make_app: MakeApp, ready_service: KeyService, settings: Any, admin: dict[str, str]
) -> None:
    """Before #19 every sign request read the API key row (and the prepared signer re-checked
    key_version every 0.25 s): with both bounds at a minute, 30 requests run no statement."""
    ready_service.revalidate_after = 60.0
    app = make_app(settings, ready_service, watchers=[])
    statements: list[str] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        assert (await c.post(SIGN, headers=admin, json={})).status_code == 200  # warm
        await anyio.to_thread.run_sync(app.key_cache.usage.flush)  # type: ignore[union-attr]
        ready_service.store.fault_hook = statements.append
        try:
            for i in range(30):
                r = await c.post(SIGN, headers=admin, json={"claims": {"n": i}})
                assert r.status_code == 200
            r = await c.post(BATCH, headers=admin, json={"items": [{}] * 10})
            assert r.status_code == 200 and len(r.json()["items"]) == 10
        finally:
            ready_service.store.fault_hook = None
    assert statements == []


async def test_revoked_key_refused_at_once_here_and_within_the_bound_from_elsewhere(
    client: httpx.AsyncClient, app: KeyturnApp, ready_service: KeyService, api_keys: ApiKeyStore
) -> None:
    local = ready_service.api_keys()  # the instance the app (and its console) revoke through
    rec, token = local.create("signer", tenant="default", actor="t")
    assert (await client.post(SIGN, headers=bearer(token), json={})).status_code == 200
    local.revoke(rec.key_id, actor="t")
    r = await client.post(SIGN, headers=bearer(token), json={})
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API key"

    # Another process (the CLI: its own ApiKeyStore, no in-process hook): within the
    # service's revalidation bound (0.25 s), as for a key change.
    rec, token = api_keys.create("signer", tenant="default", actor="t")
    assert (await client.post(SIGN, headers=bearer(token), json={})).status_code == 200
    api_keys.revoke(rec.key_id, actor="cli")
    revoked_at = anyio.current_time()
    for _ in range(200):
        if (await client.post(SIGN, headers=bearer(token), json={})).status_code == 401:
            break
        await anyio.sleep(0.01)
    else:
        pytest.fail("still signing 2 s after the revoke")
    assert anyio.current_time() - revoked_at < 2.0
    assert ready_service.revalidate_after == 0.25


async def test_last_used_recorded_off_the_request_path(
    client: httpx.AsyncClient, app: KeyturnApp, ready_service: KeyService
) -> None:
    keys = ready_service.api_keys()
    rec, token = keys.create("signer", tenant="default", actor="t")
    threads: list[str] = []

    def hook(stmt: str) -> None:
        if stmt.lstrip().upper().startswith("UPDATE API_KEYS"):
            threads.append(threading.current_thread().name)

    ready_service.store.fault_hook = hook
    try:
        for _ in range(5):
            assert (await client.post(SIGN, headers=bearer(token), json={})).status_code == 200
        for _ in range(500):  # up to 5 s; in practice milliseconds
            if keys.get(rec.key_id).last_used_at is not None:
                break
            await anyio.sleep(0.01)
        else:
            pytest.fail("last_used_at not written within 5 s")
    finally:
        ready_service.store.fault_hook = None
        assert app.key_cache is not None
        app.key_cache.usage.close()
    assert keys.get(rec.key_id).last_used_at == ready_service.clock.now()
    assert threads == ["keyturn-apikey-usage"]  # one write, in the usage thread


async def test_signed_on_the_loop_without_a_thread_hop_large_batches_in_a_thread(
    make_app: MakeApp, ready_service: KeyService, settings: Any, admin: dict[str, str]
) -> None:
    for name, alg in (("es", Alg.ES256), ("ed", Alg.EdDSA)):
        ready_service.create_tenant(
            name, issuer=f"https://{name}.example", policy=Policy(alg=alg), actor="t"
        )
    where: dict[str, list[str]] = {}
    real = ready_service.sign

    def spy(name: str, claims: dict[str, Any], *, ttl: float | None = None) -> Any:
        where.setdefault(name, []).append(threading.current_thread().name)
        return real(name, claims, ttl=ttl)

    ready_service.sign = spy  # type: ignore[method-assign]
    app = make_app(settings, ready_service, watchers=[])
    loop_thread = threading.current_thread().name
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        for tenant in ("es", "ed", "default"):
            for _ in range(3):
                r = await c.post(f"{API}/tenants/{tenant}/tokens/sign", headers=admin, json={})
                assert r.status_code == 200
        for tenant in ("es", "default"):
            where.pop(tenant)
            r = await c.post(
                f"{API}/tenants/{tenant}/tokens/sign-batch",
                headers=admin,
                json={"items": [{}] * 17},
            )
            assert r.status_code == 200
            assert len(where[tenant]) == 17 and loop_thread not in where[tenant]
    # The first request prepares the signer and loads the served JWKS (the sign step's
    # barrier: its kid published before a token leaves), store reads, in a thread; every
    # later one signs on the loop.
    assert where["ed"][1:] == [loop_thread] * 2


async def test_batch_all_or_nothing_and_counted_per_token(
    make_app: MakeApp, ready_service: KeyService, settings: Any, admin: dict[str, str]
) -> None:
    metrics = ServerMetrics(ready_service)
    app = make_app(settings, ready_service, watchers=[], metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        r = await c.post(BATCH, headers=admin, json={"items": [{}, {"ttl": 7200}]})
        assert r.status_code == 422
        assert r.json()["code"] == "token_lifetime_exceeded"
        assert r.json()["detail"].startswith("items[1]: token lifetime 7200s exceeds")
        assert '"token":' not in r.text and "eyJ" not in r.text
        items = [{"claims": {"sub": f"user-{i}"}, "ttl": 60 + i} for i in range(10)]
        r = await c.post(BATCH, headers=admin, json={"items": items})
        assert r.status_code == 200
        out = r.json()["items"]
        text = (await c.get("/metrics")).text
    p = ready_service.prepared("default")
    for i, item in enumerate(out):
        claims, _ = verify_token(
            item["token"], p.keyset, algorithms=p.algs, now=ready_service.clock.now()
        )
        assert claims["sub"] == f"user-{i}"
        assert claims["exp"] - claims["iat"] == 60 + i
    assert p.signer is not None
    line = f'keyturn_tokens_signed_total{{kid="{p.signer.kid}",tenant="default"}} 10.0'
    assert line in text


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_revoke_on_one_replica_refused_on_the_other_by_notify(
    make_app: MakeApp, ready_service: KeyService, settings: Any, sealer: Sealer
) -> None:
    """Two replicas on one PostgreSQL; the cache trusts entries for a minute, so only the
    NOTIFY apikey:<id> can make B refuse the key A revoked."""
    other_store = SqlStore(ready_service.store.url)
    other = KeyService(other_store, sealer, ready_service.clock, revalidate_after=60.0)
    ready_service.revalidate_after = 60.0
    a = make_app(settings, ready_service, poll_interval=60)
    b = make_app(settings, other, poll_interval=60)
    await b.startup()
    try:
        from keyturn.server.watch import ListenWatcher

        listen = next(w for w in b.watchers if isinstance(w, ListenWatcher))
        assert await anyio.to_thread.run_sync(listen.wait_connected, 5.0)
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=PUBLIC_URL) as ca,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url=PUBLIC_URL) as cb,
        ):
            keys_a = ready_service.api_keys()
            rec, token = keys_a.create("signer", tenant="default", actor="t")
            assert parse_token(token) is not None
            for c in (ca, cb):
                assert (await c.post(SIGN, headers=bearer(token), json={})).status_code == 200
            keys_a.revoke(rec.key_id, actor="replica-a")
            assert (await ca.post(SIGN, headers=bearer(token), json={})).status_code == 401
            for _ in range(200):  # up to 2 s, the bound of a key change; in practice ms
                if (await cb.post(SIGN, headers=bearer(token), json={})).status_code == 401:
                    break
                await anyio.sleep(0.01)
            else:
                pytest.fail("replica B still signs with the key 2 s after A revoked it")
    finally:
        await b.shutdown()
        other_store.dispose()


async def test_concurrent_requests_share_one_store_read(
    make_app: MakeApp, ready_service: KeyService, settings: Any, admin: dict[str, str]
) -> None:
    """An entry gone stale is read once for every request that finds it so (32 connections
    used to mean 32 reads of the same row each revalidation period)."""
    ready_service.revalidate_after = 60.0
    app = make_app(settings, ready_service, watchers=[])
    assert app.key_cache is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        assert (await c.post(SIGN, headers=admin, json={})).status_code == 200
        app.key_cache.invalidate(None)
        ready_service.invalidate("default")
        reads: list[str] = []

        def hook(stmt: str) -> None:
            if stmt.lstrip().upper().startswith("SELECT"):
                reads.append(stmt.split("FROM", 1)[1].split()[0])

        ready_service.store.fault_hook = hook
        try:
            results: list[int] = []

            async def one() -> None:
                results.append((await c.post(SIGN, headers=admin, json={})).status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
        finally:
            ready_service.store.fault_hook = None
    assert results == [200] * 20
    assert reads.count("api_keys") == 1


def test_recheck_renews_the_bound_or_picks_up_a_change(
    ready_service: KeyService, sealer: Sealer
) -> None:
    ready_service.revalidate_after = 60.0  # the test's own pace cannot cross the bound
    ready_service.prepared("default")
    assert ready_service.warm_alg("default") == Alg.RS256
    ready_service.clock.advance(61.0)  # type: ignore[attr-defined]
    assert ready_service.warm_alg("default") is None  # past the bound
    ready_service.recheck("default")
    assert ready_service.warm_alg("default") == Alg.RS256
    other_store = SqlStore(ready_service.store.url)
    try:
        other = KeyService(other_store, sealer, ready_service.clock)
        other.rotate("default", actor="cli", reason="elsewhere")
        new_kid = other.prepared("default").signer.kid  # type: ignore[union-attr]
    finally:
        other_store.dispose()
    assert ready_service.prepared("default").signer.kid != new_kid  # type: ignore[union-attr]
    ready_service.recheck("default")
    assert ready_service.prepared("default").signer.kid == new_kid  # type: ignore[union-attr]


async def test_store_down_same_503_and_store_error_count(
    make_app: MakeApp, ready_service: KeyService, settings: Any, admin: dict[str, str]
) -> None:
    from keyturn.errors import StoreUnavailableError

    def down(_stmt: str) -> None:
        raise StoreUnavailableError("test: database down")

    answers = []
    for fast_sign in (True, False):
        metrics = ServerMetrics(ready_service)
        app = make_app(settings, ready_service, watchers=[], metrics=metrics, fast_sign=fast_sign)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
            ready_service.store.fault_hook = down
            try:
                r = await c.post(SIGN, headers=admin, json={})
            finally:
                ready_service.store.fault_hook = None
            text = (await c.get("/metrics")).text
        answers.append((r.status_code, r.json()))
        assert 'keyturn_store_errors_total{operation="write"} 1.0' in text
    assert answers[0] == answers[1]
    assert answers[0][0] == 503 and answers[0][1]["code"] == "store_unavailable"


async def test_shutdown_waits_for_the_reads_started_off_the_request(
    make_app: MakeApp, ready_service: KeyService, settings: Any, admin: dict[str, str]
) -> None:
    """A refresh-ahead read nobody awaits, still running at shutdown, held a pooled connection
    past the owner's ``store.dispose()``: never closed, found by the garbage collector later
    (in another test: "psycopg.Connection ... deleted while still open"). Shutdown waits."""
    ready_service.revalidate_after = 60.0  # the test's own pace cannot cross the bound
    app = make_app(settings, ready_service, watchers=[])
    started, release = threading.Event(), threading.Event()

    def hook(stmt: str) -> None:
        if stmt.lstrip().upper().startswith("SELECT API_KEYS."):  # the key's re-read
            started.set()
            release.wait(5)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        assert (await c.post(SIGN, headers=admin, json={})).status_code == 200  # key cached
        # Past half the bound, within it: answered from the cache, the key re-read behind.
        ready_service.clock.advance(40.0)  # type: ignore[attr-defined]
        ready_service.store.fault_hook = hook
        try:
            assert (await c.post(SIGN, headers=admin, json={})).status_code == 200
            assert await anyio.to_thread.run_sync(started.wait, 5.0)
            shutdown = asyncio.ensure_future(app.shutdown())
            await anyio.sleep(0.2)
            assert not shutdown.done()  # waiting for the read
            release.set()
            await shutdown
        finally:
            release.set()
            ready_service.store.fault_hook = None
    assert ready_service.store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_api_responses_carrying_secrets_are_never_cached(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient], admin: dict[str, str]
) -> None:
    # Review finding: signed tokens, one-time secrets and refresh tokens went out without
    # Cache-Control; every /api/ answer (fast path, FastAPI, errors) now says no-store.
    for client in pair:
        signed = await client.post(SIGN, json={"claims": {"sub": "a"}}, headers=admin)
        batch = await client.post(BATCH, json={"items": [{}]}, headers=admin)
        refused = await client.post(SIGN, json={"claims": {}})
        listed = await client.get(f"{API}/tenants", headers=admin)
        jwks = await client.get("/.well-known/jwks.json")
        assert signed.status_code == 200 and signed.headers["cache-control"] == "no-store"
        assert batch.status_code == 200 and batch.headers["cache-control"] == "no-store"
        assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
        assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
        assert jwks.headers["cache-control"].startswith("public, max-age=")  # stays public


def test_a_spray_of_unknown_key_ids_does_not_evict_the_real_keys(
    ready_service: KeyService, api_keys: ApiKeyStore
) -> None:
    # Review finding: at the cap the cache was cleared whole, so random kt_ ids (no auth
    # needed to send them) pushed every real key out; unknown ids are now evicted first.
    from keyturn.server.keycache import ApiKeyCache

    cache = ApiKeyCache(api_keys, ready_service.clock, max_entries=4)
    real = parse_token(api_keys.create("admin", actor="test")[1])
    assert real is not None
    cache.load(real[0])
    for i in range(10):
        cache.load(f"{i:016x}")
    loads = cache.loads
    assert cache.peek(real[0]) is not None and cache.peek(real[0]).key is not None  # type: ignore[union-attr]
    assert cache.loads == loads
