"""Issue #12 on the server's side, in-process on SQLite and PostgreSQL.

- a token never leaves before the server's own JWKS publishes its kid, even when another process
  changed the ring and no watcher has told this one yet;
- manual rotations past the key cap are refused with the numbers; signing ignores the cap;
- the revocation feed forgets kids no live token can carry, and stays bounded;
- a master key this process has not loaded is read from the key file, and /readyz says when the
  current key cannot be unsealed.
"""

from __future__ import annotations

import httpx
import pytest

from keyturn import errors as E
from keyturn.clock import FakeClock
from keyturn.keys.sealing import MasterKey, Sealer
from keyturn.ring.model import Policy
from keyturn.server.app import KeyturnApp
from keyturn.server.documents import Revocation
from keyturn.service import KeyService
from keyturn.tokens.keyset import MAX_JWKS_KEYS

pytestmark = pytest.mark.anyio

API = "/api/v1"
FAST_ES = Policy(alg="ES256")  # type: ignore[arg-type]


def _kid(token: str) -> str:
    import base64

    import orjson

    head = token.split(".")[0]
    return str(orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def _other_process(service: KeyService, sealer: Sealer | None = None) -> KeyService:
    """Another process on the same database (a CLI, a replica): it tells this app nothing."""
    return KeyService(service.store, sealer or service.sealer, service.clock)


async def _jwks_kids(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    return {k["kid"] for k in r.json()["keys"]}


async def test_a_token_never_leaves_before_its_kid_is_in_our_jwks(
    client: httpx.AsyncClient, ready_service: KeyService, admin_token: str
) -> None:
    admin = {"Authorization": f"Bearer {admin_token}"}
    ready_service.revalidate_after = 0  # the signer sees the ring's change at once
    before = await _jwks_kids(client)  # the documents are cached now
    cli = _other_process(ready_service)
    cli.revoke_all("default", reason="leaked store", actor="cli")
    r = await client.post(f"{API}/tenants/default/tokens/sign", headers=admin, json={})
    assert r.status_code == 200
    kid = _kid(r.json()["token"])
    assert kid not in before
    assert kid in await _jwks_kids(client)


async def test_the_revocation_stream_learns_of_the_change_through_the_sign_path(
    app: KeyturnApp, ready_service: KeyService, admin_token: str, client: httpx.AsyncClient
) -> None:
    ready_service.revalidate_after = 0
    await _jwks_kids(client)
    cli = _other_process(ready_service)
    old = ready_service.ring("default")[1].current
    assert old is not None
    cli.revoke_all("default", reason="leaked store", actor="cli")
    admin = {"Authorization": f"Bearer {admin_token}"}
    r = await client.post(f"{API}/tenants/default/tokens/sign", headers=admin, json={})
    assert r.status_code == 200
    docs = app.cache.peek("default")
    assert docs is not None and old.kid in {r.kid for r in docs.revoked}


def _rotate_to_the_cap(service: KeyService, name: str) -> None:
    service.create_tenant(name, issuer=f"https://{name}.example", policy=FAST_ES, actor="test")
    for _ in range(MAX_JWKS_KEYS - 2):  # current + next, then one previous per rotation
        service.rotate(name, actor="test")
    assert len(service.ring(name)[1].published) == 100


def test_a_rotation_past_the_key_cap_is_refused_with_the_numbers(
    ready_service: KeyService,
) -> None:
    _rotate_to_the_cap(ready_service, "busy")
    with pytest.raises(E.KeyCapError) as info:
        ready_service.rotate("busy", actor="test")
    assert info.value.code == "key_cap_reached"
    assert (info.value.published, info.value.cap) == (100, 100)
    assert "would publish 101 keys" in info.value.detail
    assert "keyturn key revoke" in info.value.detail
    # Revoking is the way out, and signing still works at the cap.
    previous = [k for k in ready_service.ring("busy")[1].published if k.state == "previous"]
    ready_service.revoke("busy", previous[0].kid, reason="not needed", actor="test")
    ready_service.rotate("busy", actor="test")
    assert ready_service.sign("busy", {"sub": "a"})[0]


async def test_the_key_cap_is_a_409_problem_and_exit_code_4(
    client: httpx.AsyncClient, ready_service: KeyService, admin_token: str
) -> None:
    from keyturn.cli import exit_code_for

    _rotate_to_the_cap(ready_service, "busy")
    admin = {"Authorization": f"Bearer {admin_token}"}
    r = await client.post(f"{API}/tenants/busy/keys/rotate", headers=admin, json={})
    assert r.status_code == 409
    body = r.json()
    assert (body["code"], body["published"], body["cap"]) == ("key_cap_reached", 100, 100)
    assert exit_code_for(E.KeyCapError("x", published=100, cap=100)) == 4


def test_signing_never_fails_because_of_jwks_size(
    ready_service: KeyService, clock: FakeClock
) -> None:
    # Scheduled rotations are not capped: R=1s with a retention of 2T=300s keeps ~300 keys.
    policy = Policy(
        alg="ES256",  # type: ignore[arg-type]
        rotation_period=1,
        token_ttl=150,
        jwks_max_age=1,
        clock_skew=0,
    )
    # Forced (audited): the policy rules refuse it, but a forced policy must not break signing.
    ready_service.create_tenant(
        "many", issuer="https://many.example", policy=policy, actor="t", force=True
    )
    for _ in range(MAX_JWKS_KEYS + 5):
        clock.advance(1)
        ready_service.sweep_tenant("many")
    assert len(ready_service.ring("many")[1].published) > MAX_JWKS_KEYS
    token, _ = ready_service.sign("many", {"sub": "a"})
    claims, kid = ready_service.verify("many", token)
    assert claims["sub"] == "a" and kid == _kid(token)


def test_the_feed_forgets_kids_no_live_token_can_carry() -> None:
    from keyturn.server.documents import feed_entries

    # T + C + S = 100 s: a kid revoked 101 s ago is gone, one revoked 99 s ago stays.
    entries = [Revocation("gone", 1000.0, "x"), Revocation("kept", 1002.0, "x")]
    kept = feed_entries(entries, now=1101.0, horizon=100.0)
    assert [r.kid for r in kept] == ["kept"]


def test_the_feed_stays_bounded_newest_first_kept() -> None:
    from keyturn.server.documents import FEED_MAX_BYTES, feed_entries

    entries = [Revocation(f"kid-{i:05d}", float(i), "r" * 500) for i in range(3000)]
    kept = feed_entries(entries, now=3000.0, horizon=1e9)
    import orjson

    size = len(orjson.dumps({"revoked": [r.to_dict() for r in kept]}))
    assert size <= FEED_MAX_BYTES
    assert kept[-1].kid == "kid-02999"  # the newest survive
    assert len(kept) < 3000


async def test_revocations_json_drops_an_expired_revocation(
    client: httpx.AsyncClient, ready_service: KeyService, clock: FakeClock, app: KeyturnApp
) -> None:
    old = ready_service.ring("default")[1].current
    assert old is not None
    ready_service.rotate_and_revoke("default", reason="leak", actor="test")
    r = await client.get("/revocations.json")
    assert old.kid in {e["kid"] for e in r.json()["revoked"]}
    policy = ready_service.tenant("default").policy
    clock.advance(policy.token_ttl + policy.jwks_max_age + policy.clock_skew + 1)
    ready_service.rotate("default", actor="test")  # any change re-renders the documents
    r = await client.get("/revocations.json")
    assert old.kid not in {e["kid"] for e in r.json()["revoked"]}


async def test_a_new_master_key_is_read_from_the_key_file(
    client: httpx.AsyncClient, ready_service: KeyService, admin_token: str
) -> None:
    held = list(ready_service.sealer.keys)
    key_file: list[MasterKey] = list(held)
    ready_service.reload_sealer = lambda: Sealer(key_file)
    ready_service.revalidate_after = 0
    # `keyturn master-key rotate` elsewhere: the file gains a key, every blob is re-sealed.
    new = MasterKey.generate()
    key_file[:] = [new, *held]
    cli = _other_process(ready_service, Sealer([new, *held]))
    cli.reseal_all(cli.sealer, actor="cli")
    cli.rotate("default", actor="cli")  # the next key (re-sealed under the new key) signs
    admin = {"Authorization": f"Bearer {admin_token}"}
    r = await client.post(f"{API}/tenants/default/tokens/sign", headers=admin, json={})
    assert r.status_code == 200, r.text
    assert (await client.get("/readyz")).status_code == 200
    assert ready_service.sealer.active_id == new.id


async def test_readyz_is_503_when_the_current_key_cannot_be_unsealed(
    client: httpx.AsyncClient, ready_service: KeyService
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    foreign = MasterKey.generate()  # a key this process can never read
    cli = _other_process(ready_service, Sealer([foreign, *ready_service.sealer.keys]))
    cli.reseal_all(cli.sealer, actor="cli")
    cli.rotate("default", actor="cli")
    ready_service.invalidate()
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["code"] == "master_key_invalid"
