"""``keyturn diagnose`` against a real ``keyturn serve``: across a rotation, then a revocation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from keyturn.diagnose import Verdict, diagnose

from ..server.live import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One server for the module: both tests leave it with a usable current key.
    live = LiveServer.start(tmp_path_factory.mktemp("live") / "home")
    try:
        yield live
    finally:
        live.stop()


def _sign(live: LiveServer) -> str:
    out = live.cli("token", "sign", "--claims", '{"aud": "api", "sub": "u1"}', "--json").stdout
    token = orjson.loads(out)["token"]
    assert isinstance(token, str)
    return token


def _kid(token: str) -> str:
    from keyturn.keys.b64 import b64url_decode

    kid = orjson.loads(b64url_decode(token.split(".")[0]))["kid"]
    assert isinstance(kid, str)
    return kid


def _wait_for_jwks(client: httpx.Client, live: LiveServer, *, without: str) -> None:
    # The server learns of CLI changes by polling (0.2 s here).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        doc = client.get(f"{live.url}/.well-known/jwks.json").json()
        if without not in {k["kid"] for k in doc["keys"]}:
            return
        time.sleep(0.1)
    raise AssertionError(f"{without} still published after 10 s")


def test_diagnose_live_server_rotation_then_revocation(server: LiveServer) -> None:
    with httpx.Client() as client:
        before = _sign(server)
        r = diagnose(before, issuer=server.url, audience="api", client=client)
        assert r.verdict is Verdict.OK, (r.cause, r.summary, r.findings)
        assert r.discovery is not None and r.discovery.is_keyturn
        assert r.caching is not None and r.caching.safe is True
        assert r.jwks is not None and r.jwks.all_kids_are_thumbprints

        server.cli("key", "rotate", "--reason", "test")
        after = _sign(server)
        assert _kid(after) != _kid(before)
        # Overlap at work: the old token's key is still published as previous, and the new key
        # was published (as next) before it signed.
        for token in (before, after):
            r = diagnose(token, issuer=server.url, audience="api", client=client)
            assert r.verdict is Verdict.OK, (r.cause, r.summary)

        old = _kid(before)
        server.cli("key", "revoke", old, "--reason", "laptop stolen")
        _wait_for_jwks(client, server, without=old)
        r = diagnose(before, issuer=server.url, audience="api", client=client)
        assert r.verdict is Verdict.KID_NOT_PUBLISHED
        assert r.cause == "key_revoked", r.summary
        assert "laptop stolen" in r.summary
        assert diagnose(after, issuer=server.url, client=client).verdict is Verdict.OK


def test_cli_diagnose_live_server_exit_codes(server: LiveServer) -> None:
    token = _sign(server)
    ok = server.cli("diagnose", token, "--issuer", server.url, "--audience", "api", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert token not in ok.stdout + ok.stderr
    wrong = server.cli("diagnose", token, "--issuer", server.url, "--audience", "web", check=False)
    assert wrong.returncode == 18, wrong.stdout
    inspect = server.cli("jwks", "inspect", f"{server.url}/.well-known/jwks.json", check=False)
    assert inspect.returncode == 0 and "KID=THUMBPRINT" in inspect.stdout
