"""The API-key check compares hashes in constant time, for known and unknown key ids alike.

A spy wraps ``hmac.compare_digest`` and ``secrets.compare_digest`` (the same function): every
presented key must reach exactly one compare of two 64-character SHA-256 hex digests, whether
its id exists, its secret is wrong, or the key is revoked. An ``==`` compare, or an early
return for an unknown id (whose timing tells which ids exist), fails these tests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import httpx
import pytest

from keyturn.store import apikeys as apikeys_module
from keyturn.store.apikeys import ApiKeyStore, parse_token

Calls = list[tuple[Any, Any]]

UNKNOWN_ID = "0123456789abcdef"
SECRET = "s" * 43


@pytest.fixture
def compares(monkeypatch: pytest.MonkeyPatch) -> Calls:
    real = hmac.compare_digest
    calls: Calls = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)
    if hasattr(apikeys_module, "compare_digest"):  # a `from hmac import compare_digest`
        monkeypatch.setattr(apikeys_module, "compare_digest", spy)
    return calls


def _sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _is_digest(value: Any) -> bool:
    text = value.decode() if isinstance(value, bytes) else value
    return isinstance(text, str) and len(text) == 64


def test_known_id_right_secret_one_constant_time_compare(
    api_keys: ApiKeyStore, compares: Calls
) -> None:
    rec, token = api_keys.create("admin", actor="test")
    _, secret = parse_token(token) or ("", "")
    assert api_keys.authenticate(token) is not None
    assert len(compares) == 1
    a, b = compares[0]
    assert {a, b} == {_sha256_hex(secret)}


def test_known_id_wrong_secret_one_constant_time_compare(
    api_keys: ApiKeyStore, compares: Calls
) -> None:
    rec, token = api_keys.create("admin", actor="test")
    _, secret = parse_token(token) or ("", "")
    wrong = f"kt_{rec.key_id}_{SECRET}"
    assert api_keys.authenticate(wrong) is None
    assert len(compares) == 1
    a, b = compares[0]
    assert _sha256_hex(SECRET) in (a, b)
    assert _sha256_hex(secret) in (a, b)  # against the stored hash of the real secret


def test_unknown_id_still_compares_against_a_dummy_hash(
    api_keys: ApiKeyStore, compares: Calls
) -> None:
    api_keys.create("admin", actor="test")
    assert api_keys.authenticate(f"kt_{UNKNOWN_ID}_{SECRET}") is None
    assert len(compares) == 1, "an unknown id must cost the same compare as a known one"
    a, b = compares[0]
    assert _sha256_hex(SECRET) in (a, b)
    assert _is_digest(a) and _is_digest(b)  # same length as a real hash: same work


def test_revoked_key_still_compares(api_keys: ApiKeyStore, compares: Calls) -> None:
    rec, token = api_keys.create("admin", actor="test")
    api_keys.revoke(rec.key_id, actor="test")
    assert api_keys.authenticate(token) is None
    assert len(compares) == 1


def test_no_equality_compare_decides(
    api_keys: ApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the constant-time compare answering "different", no key authenticates: the answer
    comes from that compare and from nothing else (an ``==`` would still let the key in)."""
    _, token = api_keys.create("admin", actor="test")
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    monkeypatch.setattr(secrets, "compare_digest", lambda a, b: False)
    assert api_keys.authenticate(token) is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("known", [True, False], ids=["known-id", "unknown-id"])
async def test_over_http_every_bearer_key_is_compared(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, compares: Calls, known: bool
) -> None:
    rec, _ = api_keys.create("admin", actor="test")
    key_id = rec.key_id if known else UNKNOWN_ID
    r = await client.get(
        "/api/v1/tenants", headers={"Authorization": f"Bearer kt_{key_id}_{SECRET}"}
    )
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid or revoked API key"
    hashed = [c for c in compares if _sha256_hex(SECRET) in c]
    assert len(hashed) == 1


def test_last_used_is_written_again_exactly_at_the_touch_interval(
    api_keys: ApiKeyStore, clock: Any
) -> None:
    """TOUCH_INTERVAL (60 s) after the last write, the next use writes again (not 61 s)."""
    rec, token = api_keys.create("admin", actor="test")
    assert api_keys.authenticate(token) is not None
    first = api_keys.get(rec.key_id).last_used_at
    clock.advance(59)
    api_keys.authenticate(token)
    assert api_keys.get(rec.key_id).last_used_at == first
    clock.advance(1)
    api_keys.authenticate(token)
    assert api_keys.get(rec.key_id).last_used_at == first + 60


def test_record_and_audit_fields_are_named_literally(api_keys: ApiKeyStore) -> None:
    """The JSON of `keyturn apikey list --json` and the audit details of a revocation."""
    rec, _ = api_keys.create("viewer", tenant="default", description="ci", actor="test")
    assert set(rec.to_dict()) == {
        "key_id",
        "role",
        "tenant",
        "description",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert rec.to_dict()["tenant"] == "default" and rec.to_dict()["description"] == "ci"
    api_keys.revoke(rec.key_id, actor="test")
    revoked = api_keys.get(rec.key_id).to_dict()
    assert revoked["revoked_at"] is not None and revoked["last_used_at"] is None
    events = api_keys.store.audit_records(tenant="default", limit=10)
    done = next(e for e in events if e.event == "apikey.revoked")
    assert done.details == {"key_id": rec.key_id, "role": "viewer"}
