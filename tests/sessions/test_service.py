"""The session service on SQLite and PostgreSQL: clients, grants, rotation, reuse, lifetimes."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from keyturn.clock import FakeClock
from keyturn.errors import InvalidInputError
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.service import KeyService
from keyturn.sessions.errors import (
    ClientNotFoundError,
    ClientRevokedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    UnauthorizedClientError,
    UnsupportedTokenTypeError,
)
from keyturn.sessions.model import AuthMethod, OAuthClient
from keyturn.sessions.service import ClientCredentials, SessionService

TENANT = "acme"


@pytest.fixture
def svc(service: KeyService) -> SessionService:
    service.create_tenant(
        TENANT, issuer="https://id.example/t/acme", policy=Policy(alg=Alg.EdDSA), actor="test"
    )
    return SessionService(service)


@pytest.fixture
def app_client(svc: SessionService) -> tuple[OAuthClient, str]:
    client, secret = svc.create_client(TENANT, actor="test", audience="api", scope="read write")
    assert secret is not None
    return client, secret


def _auth(svc: SessionService, client: OAuthClient, secret: str) -> OAuthClient:
    return svc.authenticate(TENANT, ClientCredentials(client.client_id, secret, AuthMethod.BASIC))


def _events(svc: SessionService) -> list[str]:
    return [r.event for r in svc.store.audit_records(tenant=TENANT, limit=100, newest_first=False)]


def test_client_lifecycle_is_audited_and_the_secret_is_stored_hashed(
    svc: SessionService, app_client: tuple[OAuthClient, str]
) -> None:
    client, secret = app_client
    assert [c.client_id for c in svc.clients(TENANT)] == [client.client_id]
    assert _auth(svc, client, secret) == client
    rotated, new_secret = svc.rotate_secret(TENANT, client.client_id, actor="ops")
    assert rotated.secret_rotated_at is not None
    with pytest.raises(InvalidClientError):
        _auth(svc, client, secret)  # the old secret stops at once
    assert _auth(svc, client, new_secret).client_id == client.client_id
    svc.revoke_client(TENANT, client.client_id, actor="ops")
    with pytest.raises(InvalidClientError):
        _auth(svc, client, new_secret)
    assert svc.clients(TENANT) == []
    assert [c.client_id for c in svc.clients(TENANT, include_revoked=True)] == [client.client_id]
    assert _events(svc)[-3:] == [
        "oauth_client.created",
        "oauth_client.secret_rotated",
        "oauth_client.revoked",
    ]
    with svc.store.read() as tx:
        dump = " ".join(
            str(row) for row in tx.conn.execute(text("SELECT * FROM oauth_clients")).all()
        )
    assert secret not in dump and new_secret not in dump
    with pytest.raises(ClientRevokedError):
        svc.rotate_secret(TENANT, client.client_id, actor="ops")


@pytest.mark.parametrize(
    ("creds", "why"),
    [
        pytest.param(lambda c, s: ClientCredentials(c, "kts_wrong", AuthMethod.BASIC), "secret"),
        pytest.param(lambda c, s: ClientCredentials(c, s, AuthMethod.POST), "method"),
        pytest.param(lambda c, s: ClientCredentials(c, None, AuthMethod.NONE), "no-secret"),
        pytest.param(
            lambda c, s: ClientCredentials("ktc_" + "0" * 24, s, AuthMethod.BASIC), "unknown"
        ),
        pytest.param(lambda c, s: ClientCredentials("nonsense", s, AuthMethod.BASIC), "shape"),
    ],
)
def test_client_authentication_failures_are_one_invalid_client(
    svc: SessionService, app_client: tuple[OAuthClient, str], creds: object, why: str
) -> None:
    client, secret = app_client
    with pytest.raises(InvalidClientError, match=r"^client authentication failed$"):
        svc.authenticate(TENANT, creds(client.client_id, secret))  # type: ignore[operator]


def test_public_client_has_no_secret_and_cannot_use_client_credentials(
    svc: SessionService,
) -> None:
    pub, secret = svc.create_client(
        TENANT, actor="t", auth_method="none", grant_types=["refresh_token"]
    )
    assert secret is None
    got = svc.authenticate(TENANT, ClientCredentials(pub.client_id, None, AuthMethod.NONE))
    with pytest.raises(InvalidClientError):
        svc.authenticate(TENANT, ClientCredentials(pub.client_id, "x", AuthMethod.POST))
    with pytest.raises(UnauthorizedClientError):
        svc.client_credentials(TENANT, got, None)
    with pytest.raises(InvalidInputError, match="public client"):
        svc.create_client(TENANT, actor="t", auth_method="none")
    with pytest.raises(InvalidInputError, match="no secret to rotate"):
        svc.rotate_secret(TENANT, pub.client_id, actor="t")


def test_client_credentials_scope_and_audience(
    svc: SessionService, app_client: tuple[OAuthClient, str], service: KeyService
) -> None:
    client = _auth(svc, *app_client)
    res = svc.client_credentials(TENANT, client, "read")
    claims, _ = service.verify(TENANT, res.access_token, audience="api")
    assert claims["sub"] == client.client_id and claims["scope"] == "read"
    assert res.refresh_token is None  # RFC 6749 section 4.4.3
    assert svc.client_credentials(TENANT, client, None).scope == ("read", "write")
    with pytest.raises(InvalidScopeError):
        svc.client_credentials(TENANT, client, "admin")


def test_refresh_rotates_and_a_replayed_token_revokes_the_family(
    svc: SessionService, app_client: tuple[OAuthClient, str], clock: FakeClock
) -> None:
    """The RFC 9700 story: the thief replays a used token; the session dies for both."""
    client = _auth(svc, *app_client)
    svc.set_policy(TENANT, actor="t", reuse_grace=0)
    sess, first = svc.open_session(
        TENANT, client_id=client.client_id, subject="alice", actor="app", claims={"role": "u"}
    )
    assert first.refresh_token is not None
    clock.advance(60)
    second = svc.refresh(TENANT, client, first.refresh_token)  # the legitimate client
    assert second.refresh_token not in (None, first.refresh_token)
    assert svc.session(TENANT, sess.session_id).generation == 2
    clock.advance(60)
    with pytest.raises(InvalidGrantError, match="already used"):
        svc.refresh(TENANT, client, first.refresh_token)  # the stolen, used one
    assert svc.session(TENANT, sess.session_id).revoked_at is not None
    assert second.refresh_token is not None
    with pytest.raises(InvalidGrantError, match="revoked"):
        svc.refresh(TENANT, client, second.refresh_token)  # the legitimate client, next time
    records = svc.store.audit_records(tenant=TENANT, limit=2)
    assert [r.event for r in records] == ["session.refresh_refused", "session.reuse_detected"]
    assert {r.details["session_id"] for r in records} == {sess.session_id}
    assert records[1].details["generation"] == 1 and records[0].details["generation"] == 2
    assert svc.store.verify_audit_chain() == []


def test_refused_presentations_are_audited_a_bounded_number_of_times(
    svc: SessionService, app_client: tuple[OAuthClient, str]
) -> None:
    client = _auth(svc, *app_client)
    sess, tokens = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    svc.revoke_session(TENANT, sess.session_id, actor="t")
    assert tokens.refresh_token is not None
    for _ in range(8):
        with pytest.raises(InvalidGrantError):
            svc.refresh(TENANT, client, tokens.refresh_token)
    assert _events(svc).count("session.refresh_refused") == 5


def test_a_retry_within_the_grace_gets_a_sibling_and_keeps_the_session(
    svc: SessionService, app_client: tuple[OAuthClient, str], clock: FakeClock
) -> None:
    client = _auth(svc, *app_client)
    svc.set_policy(TENANT, actor="t", reuse_grace=5)
    sess, first = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    assert first.refresh_token is not None
    lost = svc.refresh(TENANT, client, first.refresh_token)  # the response never arrives
    clock.advance(2)
    retry = svc.refresh(TENANT, client, first.refresh_token)
    assert retry.refresh_token not in (lost.refresh_token, first.refresh_token)
    assert svc.session(TENANT, sess.session_id).active
    assert "session.refresh_retried" in _events(svc)
    assert retry.refresh_token is not None
    svc.refresh(TENANT, client, retry.refresh_token)  # the retried branch lives on
    # Its successor is used now: the original token again is a reuse, even within 5 s.
    with pytest.raises(InvalidGrantError, match="already used"):
        svc.refresh(TENANT, client, first.refresh_token)
    assert not svc.session(TENANT, sess.session_id).active


def test_idle_and_absolute_lifetimes(
    svc: SessionService, app_client: tuple[OAuthClient, str], clock: FakeClock
) -> None:
    client = _auth(svc, *app_client)
    svc.set_policy(TENANT, actor="t", idle_ttl=100, absolute_ttl=250)
    _, a = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    assert a.refresh_token is not None
    clock.advance(100)
    with pytest.raises(InvalidGrantError, match="idle"):
        svc.refresh(TENANT, client, a.refresh_token)
    _, b = svc.open_session(TENANT, client_id=client.client_id, subject="b", actor="t")
    token = b.refresh_token
    for _ in range(2):  # refreshed every 99 s: idle never hits, absolute does at 250 s
        clock.advance(99)
        assert token is not None
        token = svc.refresh(TENANT, client, token).refresh_token
    clock.advance(52)
    assert token is not None
    with pytest.raises(InvalidGrantError, match="absolute"):
        svc.refresh(TENANT, client, token)


def test_refresh_tokens_survive_revoke_all_and_get_the_new_key(
    svc: SessionService, app_client: tuple[OAuthClient, str], service: KeyService
) -> None:
    client = _auth(svc, *app_client)
    _, tokens = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    _, old_kid = service.verify(TENANT, tokens.access_token, audience="api")
    service.revoke_all(TENANT, reason="store leaked", actor="ops")
    assert tokens.refresh_token is not None
    fresh = svc.refresh(TENANT, client, tokens.refresh_token)
    claims, kid = service.verify(TENANT, fresh.access_token, audience="api")
    assert kid != old_kid and claims["sub"] == "a"


def test_access_token_lifetime_is_capped_by_the_tenant_t(service: KeyService) -> None:
    service.create_tenant(
        "short",
        issuer="https://id.example/t/short",
        policy=Policy(alg=Alg.EdDSA, token_ttl=60),
        actor="t",
    )
    svc = SessionService(service)
    client, secret = svc.create_client("short", actor="t")
    assert secret is not None
    assert svc.policy("short").access_ttl == 900
    _, tokens = svc.open_session("short", client_id=client.client_id, subject="a", actor="t")
    assert tokens.expires_in == 60


def test_tokens_are_bound_to_tenant_and_client(
    svc: SessionService, app_client: tuple[OAuthClient, str], service: KeyService
) -> None:
    client = _auth(svc, *app_client)
    other, other_secret = svc.create_client(TENANT, actor="t")
    assert other_secret is not None
    other = _auth(svc, other, other_secret)
    sess, tokens = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    assert tokens.refresh_token is not None
    with pytest.raises(InvalidGrantError, match="not issued to this client"):
        svc.refresh(TENANT, other, tokens.refresh_token)
    service.create_tenant(
        "beta", issuer="https://id.example/t/beta", policy=Policy(alg=Alg.EdDSA), actor="t"
    )
    beta_client, beta_secret = svc.create_client("beta", actor="t")
    assert beta_secret is not None
    beta = svc.authenticate(
        "beta", ClientCredentials(beta_client.client_id, beta_secret, AuthMethod.BASIC)
    )
    with pytest.raises(InvalidGrantError, match="unknown"):
        svc.refresh("beta", beta, tokens.refresh_token)
    with pytest.raises(InvalidClientError):  # a client of acme is unknown at beta
        svc.authenticate(
            "beta", ClientCredentials(client.client_id, app_client[1], AuthMethod.BASIC)
        )
    # Nothing changed: the right client on the right tenant still refreshes.
    assert svc.session(TENANT, sess.session_id).generation == 1
    assert svc.refresh(TENANT, client, tokens.refresh_token).refresh_token


def test_the_database_holds_no_refresh_token(
    svc: SessionService, app_client: tuple[OAuthClient, str]
) -> None:
    client = _auth(svc, *app_client)
    _, tokens = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    assert tokens.refresh_token is not None
    with svc.store.read() as tx:
        rows = tx.conn.execute(text("SELECT * FROM refresh_tokens")).all()
        rows += tx.conn.execute(text("SELECT * FROM audit")).all()
    assert tokens.refresh_token not in " ".join(str(r) for r in rows)


def test_log_out_everywhere_and_rfc7009_revocation(
    svc: SessionService, app_client: tuple[OAuthClient, str]
) -> None:
    client = _auth(svc, *app_client)
    other, other_secret = svc.create_client(TENANT, actor="t")
    assert other_secret is not None
    other = _auth(svc, other, other_secret)
    opened = [
        svc.open_session(TENANT, client_id=client.client_id, subject=s, actor="app")
        for s in ("alice", "alice", "bob")
    ]
    assert len(svc.sessions(TENANT, subject="alice")) == 2
    ids = svc.revoke_subject(TENANT, "alice", actor="app")
    assert sorted(ids) == sorted(s.session_id for s, _ in opened[:2])
    assert svc.sessions(TENANT, subject="alice") == []
    assert len(svc.sessions(TENANT, subject="alice", include_ended=True)) == 2
    bob_token = opened[2][1].refresh_token
    assert bob_token is not None
    assert svc.revoke_token(TENANT, other, bob_token) is False  # not its token: nothing
    assert svc.revoke_token(TENANT, client, "ktr_unknown") is False
    assert svc.revoke_token(TENANT, client, bob_token) is True
    with pytest.raises(InvalidGrantError):
        svc.refresh(TENANT, client, bob_token)
    with pytest.raises(UnsupportedTokenTypeError):
        svc.revoke_token(TENANT, client, opened[2][1].access_token)
    assert _events(svc).count("session.revoked") == 1
    assert "session.subject_revoked" in _events(svc)


def test_revoking_a_client_ends_its_sessions(
    svc: SessionService, app_client: tuple[OAuthClient, str]
) -> None:
    client = _auth(svc, *app_client)
    sess, _ = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    svc.revoke_client(TENANT, client.client_id, actor="ops")
    assert svc.session(TENANT, sess.session_id).revoked_reason == "OAuth client revoked"
    with pytest.raises(ClientRevokedError):
        svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"subject": ""}, "subject", id="empty-subject"),
        pytest.param({"subject": "a\nb"}, "control", id="control-subject"),
        pytest.param({"claims": {"sub": "x"}}, "set by keyturn", id="reserved-claim"),
        pytest.param({"claims": {"x": "y" * 5000}}, "larger", id="big-claims"),
        pytest.param({"scope": "admin"}, "scope", id="scope"),
        pytest.param({"client_id": "ktc_" + "0" * 24}, "no OAuth client", id="unknown-client"),
    ],
)
def test_open_session_refuses_bad_input_and_changes_nothing(
    svc: SessionService, app_client: tuple[OAuthClient, str], kw: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"client_id": app_client[0].client_id, "subject": "a", **kw}
    before = _events(svc)
    with pytest.raises((InvalidInputError, ClientNotFoundError), match=match):
        svc.open_session(TENANT, actor="t", **args)  # type: ignore[arg-type]
    assert _events(svc) == before
    assert svc.sessions(TENANT, include_ended=True) == []


def test_concurrent_refreshes_of_one_token_never_both_rotate(
    svc: SessionService, app_client: tuple[OAuthClient, str]
) -> None:
    """Four threads present the same token at once, no grace: exactly one rotation wins and
    the others are reuses that revoke the family (the store serialises them)."""
    client = _auth(svc, *app_client)
    svc.set_policy(TENANT, actor="t", reuse_grace=0)
    sess, tokens = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    assert tokens.refresh_token is not None
    start = threading.Barrier(4)
    wins: list[str] = []
    refusals: list[str] = []

    def go() -> None:
        start.wait(10)
        try:
            res = svc.refresh(TENANT, client, tokens.refresh_token or "")
            wins.append(res.refresh_token or "")
        except InvalidGrantError as exc:
            refusals.append(exc.detail)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1 and len(refusals) == 3
    assert not svc.session(TENANT, sess.session_id).active


def test_purge_removes_long_ended_sessions(
    svc: SessionService, app_client: tuple[OAuthClient, str], clock: FakeClock
) -> None:
    client = _auth(svc, *app_client)
    old, _ = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    live, _ = svc.open_session(TENANT, client_id=client.client_id, subject="b", actor="t")
    svc.revoke_session(TENANT, old.session_id, actor="t")
    clock.advance(8 * 86400)
    assert svc.purge(actor="t") == 1
    assert [s.session_id for s in svc.sessions(TENANT, include_ended=True)] == [live.session_id]


def test_many_concurrent_refreshes_do_not_exhaust_the_connection_pool(
    store: object, sealer: object, clock: FakeClock
) -> None:
    """20 sessions refreshing at once, with the signer re-checked on every call: each refresh
    holds one pooled connection for its transaction and signs inside it, so signing must not
    need a second one (the pool has 15; the bench's 16 chains once stalled for its 30 s
    timeout)."""
    keys = KeyService(store, sealer, clock, revalidate_after=0)  # type: ignore[arg-type]
    keys.create_tenant(
        TENANT, issuer="https://id.example/t/acme", policy=Policy(alg=Alg.EdDSA), actor="t"
    )
    svc = SessionService(keys)
    client, _ = svc.create_client(
        TENANT, actor="t", auth_method="none", grant_types=["refresh_token"]
    )
    authed = svc.authenticate(TENANT, ClientCredentials(client.client_id, None, AuthMethod.NONE))
    tokens = [
        svc.open_session(TENANT, client_id=client.client_id, subject=f"u{i}", actor="t")[1]
        for i in range(20)
    ]
    start = threading.Barrier(20)
    done: list[bool] = []

    def go(tok: str) -> None:
        start.wait(10)
        done.append(bool(svc.refresh(TENANT, authed, tok).refresh_token))

    threads = [threading.Thread(target=go, args=(t.refresh_token,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert done == [True] * 20


def test_a_grace_retry_does_not_split_the_family_into_two_live_branches(
    svc: SessionService, app_client: tuple[OAuthClient, str], clock: FakeClock
) -> None:
    # A thief replays a stolen token within the grace, right after the real client refreshed:
    # the client holds successor 2, the thief successor 3. Both must not live on: the first
    # use of the superseded sibling (2) is a reuse and revokes the family (RFC 9700 4.14.2).
    client = _auth(svc, *app_client)
    svc.set_policy(TENANT, actor="t", reuse_grace=5)
    sess, first = svc.open_session(TENANT, client_id=client.client_id, subject="a", actor="t")
    assert first.refresh_token is not None
    legit = svc.refresh(TENANT, client, first.refresh_token)
    clock.advance(1)
    thief = svc.refresh(TENANT, client, first.refresh_token)  # within the grace: a sibling
    assert legit.refresh_token is not None and thief.refresh_token is not None
    with pytest.raises(InvalidGrantError, match="already used"):
        svc.refresh(TENANT, client, legit.refresh_token)
    assert not svc.session(TENANT, sess.session_id).active
    assert "session.reuse_detected" in _events(svc)
    with pytest.raises(InvalidGrantError):
        svc.refresh(TENANT, client, thief.refresh_token)
