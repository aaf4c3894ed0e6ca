"""Prometheus /metrics in-process: counters, per-tenant gauges, the cap, auth, the name contract."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyturn.clock import FakeClock
from keyturn.config import Settings
from keyturn.errors import StoreUnavailableError
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.server.app import KeyturnApp, create_app
from keyturn.server.metrics import ServerMetrics
from keyturn.service import KeyService

from .conftest import PUBLIC_URL

pytestmark = pytest.mark.anyio

API = "/api/v1"
JWKS = "/.well-known/jwks.json"
DAY = 86400.0
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics(ready_service: KeyService) -> ServerMetrics:
    return ServerMetrics(ready_service)


@pytest.fixture
def mapp(
    make_app: Callable[..., KeyturnApp],
    ready_service: KeyService,
    settings: Settings,
    metrics: ServerMetrics,
) -> KeyturnApp:
    # make_app: shut down at teardown, so its API-key usage thread is done with the store.
    return make_app(
        settings, ready_service, watchers=[], metrics=metrics, scheduler_interval=3600.0
    )


@pytest.fixture
async def mclient(mapp: KeyturnApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mapp)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
        yield c


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Samples:
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def test_counters_move_for_sign_verify_rotate_revoke_and_jwks(
    mclient: httpx.AsyncClient, admin: dict[str, str], ready_service: KeyService
) -> None:
    before = await scrape(mclient)
    assert "keyturn_tokens_signed_total" not in names(before)

    r = await mclient.post(f"{API}/tenants/default/tokens/sign", headers=admin, json={"claims": {}})
    token = r.json()["token"]
    cur = ready_service.ring("default")[1].current
    assert cur is not None
    kid = cur.kid
    for t in (token, token, "not-a-token"):
        r = await mclient.post(
            f"{API}/tenants/default/tokens/verify", headers=admin, json={"token": t}
        )
        assert r.status_code == 200
    r = await mclient.post(
        f"{API}/tenants/default/keys/rotate", headers=admin, json={"reason": "test"}
    )
    assert r.status_code == 200, r.text
    nxt = ready_service.ring("default")[1].next
    assert nxt is not None
    r = await mclient.post(
        f"{API}/tenants/default/keys/{nxt.kid}/revoke", headers=admin, json={"reason": "test"}
    )
    assert r.status_code == 200, r.text
    etag = (await mclient.get(JWKS)).headers["etag"]
    assert (await mclient.get(JWKS, headers={"If-None-Match": etag})).status_code == 304
    assert (await mclient.get(JWKS)).status_code == 200
    assert (await mclient.get("/t/nosuch/.well-known/jwks.json")).status_code == 404
    assert (await mclient.get("/t/other-name/.well-known/jwks.json")).status_code == 404
    assert (await mclient.get("/.well-known/openid-configuration")).status_code == 200

    m = await scrape(mclient)
    assert value(m, "keyturn_tokens_signed_total", tenant="default", kid=kid) == 1
    assert (
        value(m, "keyturn_verifications_total", tenant="default", outcome="success", reason="ok")
        == 2
    )
    failures = {
        dict(labels)["reason"]: v
        for (name, labels), v in m.items()
        if name == "keyturn_verifications_total" and dict(labels)["outcome"] == "failure"
    }
    assert sum(failures.values()) == 1
    assert "ok" not in failures
    assert value(m, "keyturn_rotations_total", tenant="default", trigger="manual") == 1
    assert value(m, "keyturn_revocations_total", tenant="default") == 1
    assert value(m, "keyturn_jwks_requests_total", tenant="default", status="200") == 2
    assert value(m, "keyturn_jwks_requests_total", tenant="default", status="304") == 1
    # Unknown tenants never become label values: both 404s share one series with no tenant.
    assert value(m, "keyturn_jwks_requests_total", tenant="", status="404") == 2
    assert not any("nosuch" in str(labels) for _, labels in m)
    # Discovery is not a JWKS request.
    assert sum(v for (n, _), v in m.items() if n == "keyturn_jwks_requests_total") == 5


async def test_scheduler_runs_rotations_and_last_success(
    mclient: httpx.AsyncClient, mapp: KeyturnApp, clock: FakeClock, metrics: ServerMetrics
) -> None:
    m = await scrape(mclient)
    assert value(m, "keyturn_scheduler_runs_total", result="success") == 0
    assert value(m, "keyturn_scheduler_runs_total", result="failure") == 0
    assert "keyturn_scheduler_last_success_timestamp_seconds" not in names(m)

    clock.advance(31 * DAY)
    assert mapp.scheduler is not None
    mapp.scheduler.run_once()
    metrics.scheduler_run([], StoreUnavailableError("test: database down"))

    m = await scrape(mclient)
    assert value(m, "keyturn_scheduler_runs_total", result="success") == 1
    assert value(m, "keyturn_scheduler_runs_total", result="failure") == 1
    assert value(m, "keyturn_scheduler_last_success_timestamp_seconds") == clock.now()
    assert value(m, "keyturn_rotations_total", tenant="default", trigger="scheduled") == 1
    assert value(m, "keyturn_store_errors_total", operation="write") == 1


async def test_gauges_for_a_tenant(
    mclient: httpx.AsyncClient, ready_service: KeyService, clock: FakeClock
) -> None:
    policy = ready_service.tenant("default").policy
    clock.advance(1000)
    m = await scrape(mclient)
    r, c, s = policy.rotation_period, policy.jwks_max_age, policy.clock_skew

    def g(name: str) -> float | None:
        return value(m, name, tenant="default")

    assert g("keyturn_key_age_seconds") == pytest.approx(1000)
    assert g("keyturn_rotation_period_seconds") == r
    assert g("keyturn_seconds_until_rotation") == pytest.approx(r - 1000)
    assert g("keyturn_jwks_max_age_seconds") == c
    assert g("keyturn_clock_skew_seconds") == s
    assert g("keyturn_next_key_published_seconds") == pytest.approx(1000)
    assert g("keyturn_prepublication_margin_seconds") == pytest.approx(1000 + (r - 1000) - (c + s))
    assert value(m, "keyturn_metrics_omitted_tenants") == 0

    # Overdue: the countdown goes negative and the margin counts no time left to wait.
    clock.advance(r)
    m = await scrape(mclient)
    assert g("keyturn_seconds_until_rotation") == pytest.approx(-1000)
    assert g("keyturn_prepublication_margin_seconds") == pytest.approx(r + 1000 - (c + s))


async def test_gauge_cap_keeps_the_soonest_rotations(
    ready_service: KeyService, settings: Settings, clock: FakeClock
) -> None:
    for name, days in (("soon", 7), ("late", 90)):
        ready_service.create_tenant(
            name,
            issuer=f"{PUBLIC_URL}/t/{name}",
            policy=Policy(alg=Alg.ES256, rotation_period=days * DAY),
            actor="test",
        )
    clock.advance(DAY)

    async def scrape_with(cap: int) -> Samples:
        metrics = ServerMetrics(ready_service, tenant_gauges=cap)
        app = create_app(settings, ready_service, watchers=[], metrics=metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
            return await scrape(c)

    def tenants(m: Samples) -> set[str]:
        return {
            dict(labels)["tenant"] for name, labels in m if name == "keyturn_seconds_until_rotation"
        }

    assert tenants(await scrape_with(1000)) == {"default", "soon", "late"}
    m = await scrape_with(2)
    assert tenants(m) == {"soon", "default"}  # 6 and 29 days to go; "late" has 89
    assert value(m, "keyturn_metrics_omitted_tenants") == 1
    m = await scrape_with(0)
    assert tenants(m) == set()
    assert "keyturn_key_age_seconds" not in names(m)
    assert value(m, "keyturn_metrics_omitted_tenants") == 3
    with pytest.raises(ValueError, match="tenant_gauges"):
        ServerMetrics(ready_service, tenant_gauges=-1)


async def test_store_down_scrape_still_answers_with_counters(
    mclient: httpx.AsyncClient, ready_service: KeyService
) -> None:
    assert (await mclient.get(JWKS)).status_code == 200

    def down(_stmt: str) -> None:
        raise StoreUnavailableError("test: database down")

    ready_service.store.fault_hook = down
    try:
        m = await scrape(mclient)
        # Not cached, so the store is asked: a 503 and a read error.
        assert (await mclient.get("/t/elsewhere/.well-known/jwks.json")).status_code == 503
        m2 = await scrape(mclient)
    finally:
        ready_service.store.fault_hook = None
    assert "keyturn_key_age_seconds" not in names(m)
    assert value(m, "keyturn_jwks_requests_total", tenant="default", status="200") == 1
    assert value(m, "keyturn_store_errors_total", operation="read") == 1  # the scrape's query
    assert value(m2, "keyturn_store_errors_total", operation="read") == 3
    assert value(m2, "keyturn_jwks_requests_total", tenant="", status="503") == 1
    m = await scrape(mclient)
    assert value(m, "keyturn_key_age_seconds", tenant="default") is not None


async def test_api_store_errors_counted_by_operation(
    mclient: httpx.AsyncClient, admin: dict[str, str], ready_service: KeyService
) -> None:
    original = ready_service.store.tenant

    def down(name: str) -> object:
        raise StoreUnavailableError("test: database down")

    ready_service.store.tenant = down  # type: ignore[assignment,method-assign]
    try:
        r = await mclient.get(f"{API}/tenants/default", headers=admin)
        assert r.status_code == 503
        r = await mclient.post(
            f"{API}/tenants/default/keys/rotate", headers=admin, json={"reason": "x"}
        )
        assert r.status_code == 503
    finally:
        ready_service.store.tenant = original  # type: ignore[method-assign]
    m = await scrape(mclient)
    assert value(m, "keyturn_store_errors_total", operation="read") == 1
    assert value(m, "keyturn_store_errors_total", operation="write") == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="missing"),
        pytest.param({"Authorization": "Bearer wrong"}, 401, id="wrong"),
        pytest.param({"Authorization": "Basic s3cret-token"}, 401, id="not-bearer"),
        pytest.param({"Authorization": "Bearer s3cret-token"}, 200, id="right"),
        pytest.param({"Authorization": "bearer s3cret-token"}, 200, id="scheme-any-case"),
    ],
)
async def test_metrics_token(
    ready_service: KeyService, settings: Settings, headers: dict[str, str], status: int
) -> None:
    metrics = ServerMetrics(ready_service, token="s3cret-token")
    app = create_app(settings, ready_service, watchers=[], metrics=metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
        r = await c.get("/metrics", headers=headers)
        assert r.status_code == status
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["code"] == "unauthorized"
            assert "keyturn_" not in r.text
        # The public documents stay public.
        assert (await c.get(JWKS)).status_code == 200


async def test_metrics_endpoint_methods_and_head(mclient: httpx.AsyncClient) -> None:
    r = await mclient.post("/metrics")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    r = await mclient.head("/metrics")
    assert r.status_code == 200
    assert r.content == b""
    assert (await mclient.get("/metrics/")).status_code == 404


async def test_no_metrics_without_the_hook(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 404


async def test_serve_wiring_metrics_on_by_default_and_no_metrics(
    ready_service: KeyService, settings: Settings, tmp_path: Path
) -> None:
    import argparse
    import dataclasses

    from keyturn.cli import build_parser
    from keyturn.cli.serve import _options
    from keyturn.keys.sealing import MasterKey, write_master_key_file
    from keyturn.server.serve import build_app

    # build_app opens its own service, as `keyturn serve` does (no key is opened here).
    write_master_key_file(tmp_path / "master.key", [MasterKey.generate()])
    settings = dataclasses.replace(settings, master_key_file=tmp_path / "master.key")

    def parse(*argv: str) -> argparse.Namespace:
        return build_parser().parse_args(["serve", *argv])

    default = _options(parse())
    assert default.metrics is True
    assert default.metrics_token is None
    assert default.metrics_tenant_gauges == 1000
    off = _options(parse("--no-metrics", "--metrics-tenant-gauges", "5"))
    assert off.metrics is False
    assert off.metrics_tenant_gauges == 5

    for options, status in ((default, 200), (off, 404)):
        app = build_app(settings, options)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as c:
                assert (await c.get("/metrics")).status_code == status
        finally:
            app.service.store.dispose()


def test_metrics_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyturn.cli import build_parser
    from keyturn.cli.serve import METRICS_TOKEN_ENV, _options

    monkeypatch.setenv(METRICS_TOKEN_ENV, "from-env")
    assert _options(build_parser().parse_args(["serve"])).metrics_token == "from-env"
    args = build_parser().parse_args(["serve", "--metrics-token", "from-flag"])
    assert _options(args).metrics_token == "from-flag"


# --- the contract: docs/metrics.md lists exactly what /metrics exposes ---------------------
def issuer_contract() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, label names) from the issuer table of docs/metrics.md."""
    text = METRICS_DOC.read_text()
    section = text.split("## Issuer", 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`(keyturn_[a-z0-9_]+)`", cells[0]) if len(cells) >= 4 else None
        if m is None:
            continue
        # Label names are the backticked words outside parentheses (those list the values).
        labels_cell = re.sub(r"\([^)]*\)", "", " | ".join(cells[2:-1]))
        labels = frozenset(re.findall(r"`([a-z_]+)`", labels_cell))
        out[m.group(1)] = (cells[1], labels)
    assert len(out) >= 15, "could not parse the issuer table of docs/metrics.md"
    return out


async def test_exposed_names_types_and_labels_match_the_contract(
    mclient: httpx.AsyncClient,
    mapp: KeyturnApp,
    admin: dict[str, str],
    ready_service: KeyService,
) -> None:
    # Make every metric appear at least once.
    r = await mclient.post(f"{API}/tenants/default/tokens/sign", headers=admin, json={"claims": {}})
    await mclient.post(
        f"{API}/tenants/default/tokens/verify", headers=admin, json={"token": r.json()["token"]}
    )
    await mclient.post(f"{API}/tenants/default/keys/rotate", headers=admin, json={})
    await mclient.post(
        f"{API}/tenants/default/keys/rotate-and-revoke", headers=admin, json={"reason": "test"}
    )
    await mclient.get(JWKS)
    assert mapp.scheduler is not None
    mapp.scheduler.run_once()

    r = await mclient.get("/metrics")
    contract = issuer_contract()
    exposed: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            prev = exposed.get(s.name)
            labels = frozenset(s.labels)
            assert prev is None or prev == (family.type, labels), s.name
            exposed[s.name] = (family.type, labels)
    assert set(exposed) == set(contract), "docs/metrics.md and /metrics disagree"
    assert exposed == contract


def test_signed_counts_by_the_kid_in_each_tokens_header() -> None:
    """The per-kid sign counter reads the kid back from the token (remembered per header)."""
    import base64 as b64

    from keyturn.server import metrics as m

    def token(header: bytes) -> str:
        return b64.urlsafe_b64encode(header).rstrip(b"=").decode() + ".e30.c2ln"

    a = token(b'{"alg":"ES256","kid":"key-a","typ":"JWT"}')
    b = token(b'{"alg":"ES256","kid":"key-b","typ":"JWT"}')
    for _ in range(2):  # the second time from the remembered headers
        assert m._kid_of(a) == "key-a"
        assert m._kid_of(b) == "key-b"
    assert m._kid_of(token(b'{"alg":"ES256"}')) == ""
    assert m._kid_of(token(b'{"kid":7}')) == ""
    assert m._kid_of(token(b"[1]")) == ""
    assert m._kid_of("%%%.e30.x") == ""
    for i in range(1100):  # past the cap: forgotten, never wrong
        assert m._kid_of(token(b'{"kid":"k%d"}' % i)) == f"k{i}"
    assert len(m._KIDS) <= 1024
    assert m._kid_of(a) == "key-a"
