"""The FastAPI and Flask example apps in examples/ (shown in docs/verifier.md) really work."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx

from keyturn.clock import FakeClock
from keyturn.verifier import AsyncVerifier, CacheOptions, Verifier

from .conftest import ISSUER, FakeIssuer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"keyturn_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_show_both_examples() -> None:
    docs = (EXAMPLES.parent / "docs" / "verifier.md").read_text()
    for name in ("fastapi_app.py", "flask_app.py"):
        assert f"examples/{name}" in docs
        body = (EXAMPLES / name).read_text()
        # the docs quote the heart of each example verbatim
        assert "BearerAuthMiddleware" in body


def test_fastapi_example(issuer: FakeIssuer, clock: FakeClock) -> None:
    module = _load("fastapi_app")
    kid = issuer.add_key()
    token = issuer.token(kid)

    async def main() -> None:
        verifier = AsyncVerifier(
            algorithms=["ES256"],
            issuer=ISSUER,
            transport=issuer.transport(),
            clock=clock,
            cache=CacheOptions(background=False),
        )
        app = module.create_app(verifier)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                auth = {"authorization": f"Bearer {token}"}
                assert (await client.get("/me", headers=auth)).json() == {"sub": "alice"}
                orders = (await client.get("/orders", headers=auth)).json()
                assert orders == {"owner": "alice", "orders": []}
                assert (await client.get("/me")).status_code == 401
                assert (await client.get("/healthz")).json() == {"status": "ok"}
        finally:
            await verifier.aclose()

    asyncio.run(main())


def test_flask_example(issuer: FakeIssuer, make_verifier: Callable[..., Verifier]) -> None:
    module = _load("flask_app")
    kid = issuer.add_key()
    app = module.create_app(make_verifier(algorithms=["ES256"]))
    client = app.test_client()
    r = client.get("/me", headers={"authorization": f"Bearer {issuer.token(kid)}"})
    assert r.get_json() == {"sub": "alice"}
    expired = client.get("/me", headers={"authorization": f"Bearer {issuer.token(kid, ttl=-999)}"})
    assert expired.status_code == 401
    assert expired.get_json()["code"] == "expired"
    assert client.get("/healthz").status_code == 200
