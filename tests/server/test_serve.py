"""A real ``keyturn serve`` over loopback: interop with PyJWT and Authlib, SSE, shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import jwt
import orjson
import pytest

from .live import LiveServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

API = "/api/v1"
ALGS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"]


def test_readyz_headers_and_304(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as c:
        assert c.get("/readyz").json() == {"status": "ready"}
        r = c.get("/.well-known/jwks.json")
        assert r.headers["content-type"] == "application/jwk-set+json"
        assert "server" not in r.headers
        again = c.get("/.well-known/jwks.json", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304


def test_pyjwt_jwk_client_verifies_every_algorithm_across_rotation(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, headers=live.admin, timeout=30) as c:
        for alg in ALGS:
            name = alg.lower()
            r = c.post(f"{API}/tenants", json={"name": name, "policy": {"alg": alg}})
            assert r.status_code == 201, r.text
            issuer = r.json()["tenant"]["issuer"]
            jwks_url = f"{live.url}/t/{name}/.well-known/jwks.json"
            client = jwt.PyJWKClient(jwks_url)

            def sign(name: str = name) -> str:
                r = c.post(f"{API}/tenants/{name}/tokens/sign", json={"claims": {"sub": "u1"}})
                assert r.status_code == 200, r.text
                return str(r.json()["token"])

            def check(token: str, alg: str = alg, issuer: str = issuer, client=client) -> None:  # type: ignore[no-untyped-def]
                key = client.get_signing_key_from_jwt(token)
                claims = jwt.decode(token, key.key, algorithms=[alg], issuer=issuer)
                assert claims["sub"] == "u1"

            before = sign()
            check(before)
            r = c.post(f"{API}/tenants/{name}/keys/rotate", json={"reason": "interop"})
            assert r.status_code == 200, r.text
            after = sign()
            assert (
                jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
            )
            check(after)  # the new current key was pre-published as next
            check(before)  # the previous key stays published


def test_authlib_accepts_discovery_with_operator_metadata(live: LiveServer) -> None:
    from authlib.oidc.discovery import OpenIDProviderMetadata

    with httpx.Client(base_url=live.url) as c:
        doc = c.get("/.well-known/openid-configuration").json()
    OpenIDProviderMetadata(doc).validate()
    assert doc["issuer"] == live.url
    assert doc["jwks_uri"] == f"{live.url}/.well-known/jwks.json"
    assert doc["keyturn_revocations_stream_uri"] == f"{live.url}/revocations/stream"


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of an SSE stream; comments come as ("comment", text)."""
    event, data = "message", ""
    async for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "":
            if data:
                yield event, data
            event, data = "message", ""


async def test_sse_pushes_local_and_other_process_revocations(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, headers=live.admin, timeout=30) as c:
        r = await c.post(f"{API}/tenants", json={"name": "feed", "policy": {"alg": "EdDSA"}})
        assert r.status_code == 201
        keys = (await c.get(f"{API}/tenants/feed/keys")).json()
        nxt = next(k["kid"] for k in keys if k["state"] == "next")
        async with c.stream("GET", "/t/feed/revocations/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream.aiter_lines())
            with anyio.fail_after(5):
                kind, data = await anext(events)
            assert (kind, orjson.loads(data)) == ("snapshot", {"revoked": []})

            # Revoked through this server's API: pushed on commit.
            t0 = time.monotonic()
            r = await c.post(f"{API}/tenants/feed/keys/{nxt}/revoke", json={"reason": "leak"})
            assert r.status_code == 200
            with anyio.fail_after(1):
                kind, data = await anext(events)
            assert kind == "revoked"
            pushed = orjson.loads(data)
            assert pushed["kid"] == nxt and pushed["reason"] == "leak"
            assert isinstance(pushed["revoked_at"], float)
            assert time.monotonic() - t0 < 1

            # Revoked by another process (the CLI): the watcher notices within its interval.
            current = next(k["kid"] for k in keys if k["state"] == "current")
            await anyio.to_thread.run_sync(
                lambda: live.cli("key", "rotate-and-revoke", "-t", "feed", "--reason", "cli")
            )
            t0 = time.monotonic()
            with anyio.fail_after(3):
                kind, data = await anext(events)
            assert (kind, orjson.loads(data)["kid"]) == ("revoked", current)
            assert time.monotonic() - t0 < 1.5

        # The polling document agrees.
        doc = (await c.get("/t/feed/revocations.json")).json()
        assert {r["kid"] for r in doc["revoked"]} == {nxt, current}
        assert doc["issuer"] == f"{live.url}/t/feed"


def test_cli_revocation_reaches_cached_jwks(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, headers=live.admin, timeout=30) as c:
        c.post(f"{API}/tenants", json={"name": "cli", "policy": {"alg": "ES256"}})
        first = c.get("/t/cli/.well-known/jwks.json")
        nxt = next(
            k["kid"] for k in c.get(f"{API}/tenants/cli/keys").json() if k["state"] == "next"
        )
        live.cli("key", "revoke", nxt, "-t", "cli", "--reason", "cli test")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            r = c.get("/t/cli/.well-known/jwks.json")
            if r.headers["etag"] != first.headers["etag"]:
                break
            time.sleep(0.05)
        assert nxt not in {k["kid"] for k in r.json()["keys"]}


async def test_sigterm_ends_open_streams_and_exits(tmp_path: Path) -> None:
    server = await anyio.to_thread.run_sync(LiveServer.start, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            async with c.stream("GET", "/revocations/stream") as stream:
                events = _events(stream.aiter_lines())
                with anyio.fail_after(5):
                    assert (await anext(events))[0] == "snapshot"
                t0 = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(5):
                    async for _ in events:
                        pass  # the server ends the stream: iteration stops cleanly
            await anyio.to_thread.run_sync(lambda: server.proc.wait(10))
            assert time.monotonic() - t0 < 5
            assert server.proc.returncode == 0
            assert "Application shutdown complete" in server.read_log()
    finally:
        server.stop()
