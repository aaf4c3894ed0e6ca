"""Issue #12 across replicas on PostgreSQL: revoke-all on one, sign on the other at once.

The token's kid must be in the signing replica's own JWKS when the token is returned, whether or
not its LISTEN connection has delivered the change yet (its poll runs every 30 s here).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import _pg_schema_url
from tests.replicas.harness import Replica, base_env, cli

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    yield from _pg_schema_url(pg_database)


def _kid(token: str) -> str:
    head = token.split(".")[0]
    return str(orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def test_revoke_all_on_one_replica_sign_on_the_other_at_once(tmp_path: Path, pg_url: str) -> None:
    env = base_env(tmp_path / "home", pg_url)
    cli(env, "init")
    cli(env, "tenant", "create", "acme", "--alg", "ES256")
    token = cli(env, "apikey", "create", "--role", "admin")["token"]
    auth = {"Authorization": f"Bearer {token}"}
    replicas: list[Replica] = []
    try:
        for name in ("a", "b"):
            replicas.append(
                Replica.start(name, env, tmp_path, "--no-scheduler", "--poll-interval", "30s")
            )
        a, b = replicas
        with httpx.Client(timeout=10, headers=auth) as c:
            for round_ in range(5):
                c.get(f"{b.url}/t/acme/.well-known/jwks.json").raise_for_status()  # B caches
                r = c.post(
                    f"{a.url}/api/v1/tenants/acme/keys/revoke-all",
                    json={"reason": f"drill {round_}"},
                )
                assert r.status_code == 200, r.text
                signed = c.post(f"{b.url}/api/v1/tenants/acme/tokens/sign", json={})
                assert signed.status_code == 200, signed.text
                kid = _kid(signed.json()["token"])
                served = c.get(f"{b.url}/t/acme/.well-known/jwks.json").json()
                assert kid in {k["kid"] for k in served["keys"]}, (round_, b.tail())
    finally:
        for r in replicas:
            r.stop()
