"""API keys: the token shape, the Authorization header and key creation, with literal values
(issue #20; written against the survivors of the 2026-12-02 mutation run, docs/mutation.md).
"""

from __future__ import annotations

import pytest

from keyturn.errors import AuthError, InvalidInputError
from keyturn.server.auth import authenticate
from keyturn.service import KeyService
from keyturn.store.apikeys import ApiKeyStore, parse_token

KEY_ID = "0123456789abcdef"


@pytest.mark.parametrize(
    ("token", "parsed"),
    [
        (f"kt_{KEY_ID}_" + "s" * 20, (KEY_ID, "s" * 20)),  # the shortest secret
        (f"kt_{KEY_ID}_" + "s" * 100, (KEY_ID, "s" * 100)),  # the longest
        (f"kt_{KEY_ID}_a_b" + "s" * 20, (KEY_ID, "a_b" + "s" * 20)),  # "_" inside the secret
        (f"kt_{KEY_ID}_" + "s" * 19, None),
        (f"kt_{KEY_ID}_" + "s" * 101, None),
        (f"xx_{KEY_ID}_" + "s" * 43, None),  # three parts, another prefix
        (f"KT_{KEY_ID}_" + "s" * 43, None),
        (f"kt_{KEY_ID}", None),  # two parts
        ("kt_0123456789abcde_" + "s" * 43, None),  # 15 hex characters
        ("kt_0123456789abcdef0_" + "s" * 43, None),  # 17
        ("kt_0123456789abcdeg_" + "s" * 43, None),  # 16, not all hex
        ("kt_0123456789ABCDEF_" + "s" * 43, None),  # upper case is not ours
        ("", None),
    ],
)
def test_parse_token_shape(token: str, parsed: tuple[str, str] | None) -> None:
    assert parse_token(token) == parsed


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "an API key is required: Authorization: Bearer kt_..."),
        ("", "an API key is required: Authorization: Bearer kt_..."),
        ("Basic YTpi", "use the Bearer scheme: Authorization: Bearer kt_..."),
        ("Bearer", "use the Bearer scheme: Authorization: Bearer kt_..."),
        ("Bearer    ", "use the Bearer scheme: Authorization: Bearer kt_..."),
        ("Bearer kt_nope", "invalid or revoked API key"),
        (f"Bearer kt_{KEY_ID}_" + "s" * 43, "invalid or revoked API key"),
    ],
)
def test_authenticate_refusals_have_their_exact_messages(
    api_keys: ApiKeyStore, header: str | None, message: str
) -> None:
    with pytest.raises(AuthError) as info:
        authenticate(api_keys, header)
    assert info.value.detail == message


@pytest.mark.parametrize("spacing", ["Bearer {}", "bearer {}", "BEARER {}", "Bearer   {}  "])
def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_are_allowed(
    api_keys: ApiKeyStore, spacing: str
) -> None:
    rec, token = api_keys.create("viewer", tenant="default", actor="t")
    assert authenticate(api_keys, spacing.format(token)).key.key_id == rec.key_id


def test_create_refusals_have_their_exact_messages(api_keys: ApiKeyStore) -> None:
    cases = [
        ({"role": "root"}, "unknown role 'root'; use one of admin, manager, signer, viewer"),
        (
            {"role": "admin", "tenant": "default"},
            "an admin key acts on every tenant: give no --tenant",
        ),
        ({"role": "signer"}, "a signer key acts on one tenant: give --tenant"),
        (
            {"role": "viewer", "tenant": "default", "description": "d" * 201},
            "description longer than 200 characters",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidInputError) as info:
            api_keys.create(actor="t", **kwargs)  # type: ignore[arg-type]
        assert info.value.detail == message, kwargs


def test_create_stores_the_description_time_and_audit_details(
    api_keys: ApiKeyStore, ready_service: KeyService
) -> None:
    now = ready_service.clock.now()
    rec, token = api_keys.create("viewer", tenant="default", description="d" * 200, actor="ops")
    assert rec.description == "d" * 200 and rec.created_at == now
    stored = api_keys.get(rec.key_id)
    assert (stored.description, stored.created_at, stored.tenant) == ("d" * 200, now, "default")
    assert [k.description for k in api_keys.list()] == ["d" * 200]
    # 32 random bytes: 43 base64url characters after "kt_<16 hex>_"
    parsed = parse_token(token)
    assert parsed is not None and parsed[0] == rec.key_id and len(parsed[1]) == 43
    created = next(
        e
        for e in ready_service.store.audit_records(tenant="default", limit=10)
        if e.event == "apikey.created"
    )
    assert created.details == {"key_id": rec.key_id, "role": "viewer", "description": "d" * 200}
