"""Issue #12 end to end: a real ``keyturn serve`` over loopback, the CLI beside it, in real time.

- ``keyturn key revoke --all`` from the CLI, then at once a sign through the API: the token's kid
  is in the server's own JWKS (its watcher polls every 30 s here, so it has not seen the change);
- ``keyturn master-key rotate`` while the server runs: signing goes on, /readyz stays ready;
- ``keyturn drill`` (revoke-all, rotate-and-revoke) under continuous signing and verifying, with
  verifiers that had a recent unknown-kid miss: 0 valid tokens rejected, the revoked key refused
  within 1 s on the stream and within the default poll interval with defaults; and the drill
  fails when a verifier is configured to be unsafe.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from keyturn.verifier import DEFAULT_POLL_INTERVAL

from ..server.live import LiveServer

pytestmark = pytest.mark.slow

# The poll's interval is jittered downwards; one request and the verifying loop's pace on a busy
# CI machine are the slack on top.
POLL_SLACK = 1.0


def _kid(token: str) -> str:
    head = token.split(".")[0]
    return str(orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # A watcher that polls every 30 s: anything the server knows in time, it learned itself.
    server = LiveServer.start(tmp_path_factory.mktemp("emergency"), "--poll-interval", "30s")
    try:
        yield server
    finally:
        server.stop()


def _sign(c: httpx.Client, live: LiveServer) -> str:
    r = c.post(
        f"{live.url}/api/v1/tenants/default/tokens/sign", headers=live.admin, json={"claims": {}}
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def _jwks_kids(c: httpx.Client, live: LiveServer) -> set[str]:
    r = c.get(f"{live.url}/.well-known/jwks.json")
    assert r.status_code == 200
    return {k["kid"] for k in r.json()["keys"]}


def test_a_sign_right_after_a_cli_revoke_all_is_published_by_the_signing_server(
    live: LiveServer,
) -> None:
    with httpx.Client(timeout=10) as c:
        _sign(c, live)
        before = _jwks_kids(c, live)  # the server's documents are in memory now
        out = live.cli("key", "revoke", "--all", "--reason", "drill: leaked store", "--json")
        assert out.returncode == 0, out.stderr
        kid = _kid(_sign(c, live))
        assert kid not in before
        assert kid in _jwks_kids(c, live)


def test_master_key_rotate_while_serving_never_breaks_signing(live: LiveServer) -> None:
    with httpx.Client(timeout=10) as c:
        _sign(c, live)
        out = live.cli("master-key", "rotate", "--json")
        assert out.returncode == 0, out.stderr
        # The next key (re-sealed under the new master key) becomes current: the server must
        # open it with a master key it did not have when it started.
        r = c.post(f"{live.url}/api/v1/tenants/default/keys/rotate", headers=live.admin, json={})
        assert r.status_code == 200, r.text
        _sign(c, live)
        assert c.get(f"{live.url}/readyz").status_code == 200


def _drill(live: LiveServer, *args: str) -> tuple[int, dict[str, Any]]:
    out = live.cli(
        "drill", "--api-key", live.token, "--url", live.url, "--yes", "--json", *args, check=False
    )
    assert out.stdout.strip(), out.stderr
    report: dict[str, Any] = orjson.loads(out.stdout)
    return out.returncode, report


@pytest.mark.parametrize("action", ["revoke-all", "rotate-and-revoke"])
def test_drill_no_valid_token_rejected_and_the_old_key_refused_in_time(
    live: LiveServer, action: str
) -> None:
    code, report = _drill(
        live, "--action", action, "--verifiers", "default,stream,pyjwt", "--window", "20s"
    )
    by_name = {v["name"]: v for v in report["verifiers"]}
    assert code == 0, report
    assert report["passed"] is True
    assert report["sign_errors"] == {}
    assert report["revoked"], report
    for name in ("keyturn default", "keyturn stream"):
        assert by_name[name]["valid_rejected"] == 0, by_name[name]
        assert by_name[name]["verifications"] > 100, by_name[name]
    assert by_name["keyturn stream"]["old_rejected_after"] <= 1.0
    assert by_name["keyturn default"]["old_rejected_after"] <= DEFAULT_POLL_INTERVAL + POLL_SLACK


def test_drill_fails_when_a_verifier_is_configured_unsafely(live: LiveServer) -> None:
    # revocations=None: after rotate-and-revoke the new current key was already cached (it was
    # next), so nothing makes this verifier fetch; it accepts the revoked key until max-age.
    code, report = _drill(
        live, "--action", "rotate-and-revoke", "--verifiers", "stream,no-feed", "--window", "4s"
    )
    assert code == 20, report
    assert report["passed"] is False
    by_name = {v["name"]: v for v in report["verifiers"]}
    assert by_name["keyturn stream"]["passed"] is True
    unsafe = by_name["keyturn no feed"]
    assert unsafe["passed"] is False
    assert unsafe["old_rejected_after"] is None
    assert "kept accepting" in unsafe["why"]


def test_drill_text_report_for_people(live: LiveServer, tmp_path: Path) -> None:
    out = live.cli(
        "drill",
        "--api-key",
        live.token,
        "--url",
        live.url,
        "--action",
        "rotate",
        "--verifiers",
        "stream",
        "--warmup",
        "1s",
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "drill PASSED" in out.stdout
    assert "n/a (nothing revoked)" in out.stdout
