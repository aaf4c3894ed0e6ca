"""ASGI middleware (Starlette, FastAPI) over httpx.ASGITransport; WSGI middleware on Flask's client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request  # module level: FastAPI resolves annotations here

from keyturn.clock import FakeClock
from keyturn.verifier import AsyncVerifier, CacheOptions, Verifier
from keyturn.verifier.asgi import BearerAuthMiddleware as ASGIAuth
from keyturn.verifier.asgi import claims_dependency, get_claims
from keyturn.verifier.wsgi import BearerAuthMiddleware as WSGIAuth

from .conftest import ISSUER, FakeIssuer

MakeVerifier = Callable[..., Verifier]


def _async_verifier(issuer: FakeIssuer, clock: FakeClock, **kw: Any) -> AsyncVerifier:
    return AsyncVerifier(
        algorithms=["ES256"],
        issuer=ISSUER,
        audience="api",
        transport=issuer.transport(),
        clock=clock,
        cache=CacheOptions(background=False),
        **kw,
    )


def _cases(issuer: FakeIssuer) -> list[tuple[str, dict[str, str], int, str | None]]:
    """(path, headers, status, code) for each way a request can fare."""
    kid = issuer.add_key()
    good = issuer.token(kid, aud="api")
    return [
        ("/claims", {"authorization": f"Bearer {good}"}, 200, None),
        ("/claims", {"authorization": f"bearer {good}"}, 200, None),
        ("/claims", {}, 401, "token_missing"),
        ("/claims", {"authorization": "Basic dXNlcjpwdw=="}, 401, "token_missing"),
        ("/claims", {"authorization": "Bearer "}, 400, "invalid_request"),
        ("/claims", {"authorization": "Bearer not-a-jwt"}, 401, "token_malformed"),
        (
            "/claims",
            {"authorization": f"Bearer {issuer.token(kid, ttl=-300, aud='api')}"},
            401,
            "expired",
        ),
        (
            "/claims",
            {"authorization": f"Bearer {issuer.token(kid, aud='web')}"},
            401,
            "audience_mismatch",
        ),
        ("/public/info", {}, 200, None),
    ]


def _check_denial(
    status: int, code: str | None, headers: httpx.Headers, body: Any, realm: str | None = None
) -> None:
    if status == 200:
        return
    assert body["code"] == code
    assert headers["content-type"] == "application/problem+json"
    challenge = headers["www-authenticate"]
    if realm is not None:
        prefix = f'Bearer realm="{realm}"'
        assert challenge.startswith(prefix)
        challenge = "Bearer" + challenge[len(prefix) :].replace(",", "", 1)
    if code == "token_missing":
        assert challenge == "Bearer"  # RFC 6750 3.1: no error code without credentials
    elif code == "invalid_request":
        assert challenge.startswith('Bearer error="invalid_request"')
    else:
        assert challenge.startswith('Bearer error="invalid_token", error_description="')
        assert body["action"] in ("reject", "refresh", "try_refresh")
        # The same hint, machine-readable in the header (RFC 6750 section 3 auth-params).
        assert f'keyturn_action="{body["action"]}"' in challenge
        assert f'keyturn_code="{code}"' in challenge


def _starlette_app(verifier: AsyncVerifier) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def claims(request: Request) -> JSONResponse:
        return JSONResponse(
            {"state": request.state.keyturn_claims["sub"], "helper": get_claims(request)["sub"]}
        )

    async def public(request: Request) -> JSONResponse:
        return JSONResponse({"public": True})

    app = Starlette(routes=[Route("/claims", claims), Route("/public/info", public)])
    return ASGIAuth(app, verifier=verifier, exclude=["/public/*"], realm="api")


def test_asgi_middleware_on_starlette(issuer: FakeIssuer, clock: FakeClock) -> None:
    cases = _cases(issuer)

    async def main() -> None:
        async with _async_verifier(issuer, clock) as verifier:
            app = _starlette_app(verifier)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                for path, headers, status, code in cases:
                    r = await client.get(path, headers=headers)
                    assert r.status_code == status, (path, headers, r.text)
                    if status == 200 and path == "/claims":
                        assert r.json() == {"state": "alice", "helper": "alice"}
                    else:
                        _check_denial(status, code, r.headers, r.json(), realm="api")

    asyncio.run(main())


def test_asgi_middleware_answers_503_when_keys_are_unavailable(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    kid = issuer.add_key()
    issuer.fail_status = 500

    async def main() -> None:
        async with _async_verifier(issuer, clock) as verifier:
            transport = httpx.ASGITransport(app=_starlette_app(verifier))
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                r = await client.get(
                    "/claims", headers={"authorization": f"Bearer {issuer.token(kid)}"}
                )
        assert r.status_code == 503
        assert r.json()["code"] == "jwks_unavailable"
        assert "www-authenticate" not in r.headers  # not the client's fault

    asyncio.run(main())


def test_asgi_error_description_is_header_safe(issuer: FakeIssuer, clock: FakeClock) -> None:
    kid = issuer.add_key()
    # An issuer string with a quote and a backslash ends up in the error description.
    token = issuer.token(kid, aud="api", iss='https://evil.example/"\\')

    async def main() -> None:
        async with _async_verifier(issuer, clock) as verifier:
            transport = httpx.ASGITransport(app=_starlette_app(verifier))
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                r = await client.get("/claims", headers={"authorization": f"Bearer {token}"})
        challenge = r.headers["www-authenticate"]
        # The description is followed by keyturn's own auth-params (keyturn_action, ...).
        description, rest = challenge.split('error_description="', 1)[1].split('", ', 1)
        assert '"' not in description
        assert "\\" not in description
        assert rest.startswith('keyturn_action="reject"')

    asyncio.run(main())


def test_fastapi_dependency_and_request_state(issuer: FakeIssuer, clock: FakeClock) -> None:
    from fastapi import Depends, FastAPI

    kid = issuer.add_key()
    token = issuer.token(kid, aud="api")

    async def main() -> None:
        async with _async_verifier(issuer, clock) as verifier:
            api = FastAPI()
            api.add_middleware(ASGIAuth, verifier=verifier)

            # (examples/fastapi_app.py shows the Annotated form at module level)
            @api.get("/dep")
            async def dep(
                claims: dict[str, Any] = Depends(claims_dependency()),  # noqa: B008
            ) -> dict[str, Any]:
                return {"sub": claims["sub"]}

            @api.get("/state")
            async def state(request: Request) -> dict[str, Any]:
                return {"sub": request.state.keyturn_claims["sub"]}

            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                for path in ("/dep", "/state"):
                    r = await client.get(path, headers={"authorization": f"Bearer {token}"})
                    assert r.json() == {"sub": "alice"}
                assert (await client.get("/dep")).status_code == 401

    asyncio.run(main())


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


def test_asgi_middleware_requires_an_async_verifier(make_verifier: MakeVerifier) -> None:
    with pytest.raises(TypeError):
        ASGIAuth(_app, verifier=make_verifier())  # type: ignore[arg-type]


# -- WSGI ---------------------------------------------------------------------------------------


@pytest.fixture
def flask_client(issuer: FakeIssuer, make_verifier: MakeVerifier) -> Any:
    from flask import Flask, request

    from keyturn.verifier.wsgi import get_claims as wsgi_claims

    app = Flask("t")
    verifier = make_verifier(audience="api", algorithms=["ES256"])
    app.wsgi_app = WSGIAuth(  # type: ignore[method-assign]
        app.wsgi_app, verifier=verifier, exclude=["/public/"]
    )

    @app.get("/claims")
    def claims() -> dict[str, Any]:
        return {
            "state": request.environ["keyturn.claims"]["sub"],
            "helper": wsgi_claims(request.environ)["sub"],
        }

    @app.get("/public/info")
    def public() -> dict[str, Any]:
        return {"public": True}

    return app.test_client()


def test_wsgi_middleware_on_flask(issuer: FakeIssuer, flask_client: Any) -> None:
    for path, headers, status, code in _cases(issuer):
        r = flask_client.get(path, headers=headers)
        assert r.status_code == status, (path, headers, r.data)
        if status == 200 and path == "/claims":
            assert r.get_json() == {"state": "alice", "helper": "alice"}
        else:
            _check_denial(status, code, httpx.Headers(dict(r.headers)), r.get_json())


def test_wsgi_middleware_answers_503_when_keys_are_unavailable(
    issuer: FakeIssuer, flask_client: Any
) -> None:
    kid = issuer.add_key()
    issuer.fail_status = 502
    r = flask_client.get("/claims", headers={"authorization": f"Bearer {issuer.token(kid)}"})
    assert r.status_code == 503
    assert r.get_json()["code"] == "jwks_unavailable"


def test_unknown_kid_challenge_says_try_refresh_on_asgi_and_wsgi(
    issuer: FakeIssuer, clock: FakeClock, flask_client: Any
) -> None:
    """A token whose key is gone (rotated out, revoked) gets a 401 a client can act on from the
    header alone: ``keyturn_action="try_refresh"`` (what ``keyturn.client`` refreshes on)."""
    issuer.add_key()
    gone = issuer.add_key(publish=False)
    token = issuer.token(gone, aud="api")
    expected = 'keyturn_action="try_refresh", keyturn_code="unknown_kid"'

    async def main() -> httpx.Response:
        async with _async_verifier(issuer, clock) as verifier:
            transport = httpx.ASGITransport(app=_starlette_app(verifier))
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                return await client.get("/claims", headers={"authorization": f"Bearer {token}"})

    r = asyncio.run(main())
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith(expected)
    w = flask_client.get("/claims", headers={"authorization": f"Bearer {token}"})
    assert w.status_code == 401
    assert w.headers["www-authenticate"].endswith(expected)
