"""End to end: keyturn's verifier against a real ``keyturn serve`` over loopback, in real time.

One server for the module, running its own rotation scheduler (every 0.2 s). Its public URL is
a TCP proxy in front of it, so the documents (discovery, JWKS, revocation feed) name the proxy
and every verifier reaches keyturn through it, as through a load balancer; cutting the proxy is
"the JWKS endpoint is down" while the server itself keeps signing. Tokens are signed through the
management API (``POST /api/v1/tenants/{t}/tokens/sign``) directly on the server's port.

Policies are accelerated but pass keyturn's rules without ``--force`` (R >= C + S):

- ``fast``: R=3s, T=1s, C=1s, S=1s, rotated by the server's scheduler every 3 s;
- ``steady`` / ``outage``: R=1h (no rotation during the test), T=10s, C=1s, S=1s.
"""

from __future__ import annotations

import base64
import heapq
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyturn.errors import ExpiredTokenError, JWKSUnavailableError, RevokedKidError, TokenError
from keyturn.verifier import (
    Backoff,
    CacheOptions,
    HTTPOptions,
    RevocationFeed,
    StaleInfo,
    UnknownKidOptions,
    Verifier,
)

from ..server.live import LiveServer
from .proxy import TCPProxy

pytestmark = pytest.mark.slow

AUDIENCE = "e2e-api"
SKEW = 1.0  # S of every tenant here; the verifiers' leeway
FAST = (
    "--rotation-period",
    "3s",
    "--token-ttl",
    "1s",
    "--jwks-max-age",
    "1s",
    "--clock-skew",
    "1s",
)
STEADY = (
    "--rotation-period",
    "1h",
    "--token-ttl",
    "10s",
    "--jwks-max-age",
    "1s",
    "--clock-skew",
    "1s",
)

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, tick: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(tick)


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def kid_of(token: str) -> str:
    return str(orjson.loads(_b64(token.split(".")[0]))["kid"])


@dataclass
class Stack:
    server: LiveServer
    proxy: TCPProxy
    api: httpx.Client  # the management API, straight to the server (never through the proxy)

    def issuer(self, tenant: str) -> str:
        return f"{self.proxy.url}/t/{tenant}"

    def create_tenant(self, name: str, policy: tuple[str, ...]) -> None:
        # As an operator would: the CLI, another process on the same store. The server learns of
        # the tenant from the store (its watcher polls every 0.2 s; a first request renders it).
        self.server.cli("tenant", "create", name, "--alg", "ES256", *policy)

    def sign(self, tenant: str, client: httpx.Client | None = None) -> str:
        response = (client or self.api).post(
            f"/api/v1/tenants/{tenant}/tokens/sign",
            json={"claims": {"aud": AUDIENCE, "sub": "e2e"}},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def keys(self, tenant: str) -> dict[str, str]:
        """state -> kid of the published keys (the newest previous wins; tests need current/next)."""
        response = self.api.get(f"/api/v1/tenants/{tenant}/keys")
        assert response.status_code == 200, response.text
        body = response.json()
        items = body["keys"] if isinstance(body, dict) else body
        return {k["state"]: k["kid"] for k in items}

    def audit(self, tenant: str, event: str) -> list[dict[str, Any]]:
        response = self.api.get("/api/v1/audit", params={"tenant": tenant, "event": event})
        assert response.status_code == 200, response.text
        return sorted(response.json()["items"], key=lambda e: e["at"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home: Path = tmp_path_factory.mktemp("e2e") / "home"
    with TCPProxy() as proxy:
        server = LiveServer.start(home, public_url=proxy.url, scheduler_interval="0.2s")
        proxy.target_port = server.port
        try:
            with httpx.Client(base_url=server.url, headers=server.admin, timeout=10) as api:
                yield Stack(server, proxy, api)
        finally:
            code = server.stop()
        assert code == 0, server.read_log()


def test_continuous_issuance_through_scheduled_rotations_rejects_no_valid_token(
    stack: Stack,
) -> None:
    """Warm cache honouring max-age=1 s; tokens signed continuously by several threads through
    at least three rotations by the server's own scheduler, each verified right after issue and
    again shortly before it expires (often after its key stopped signing): zero rejected, and no
    token ever needed the unknown-kid refresh (each key was cached before it signed)."""
    stack.create_tenant("fast", FAST)
    started = time.monotonic()
    verifier = Verifier(
        issuer=stack.issuer("fast"),
        algorithms=["ES256"],
        audience=AUDIENCE,
        leeway=SKEW,
        # The floor at 1 s lets the server's max-age=1 through; everything else is the default.
        cache=CacheOptions(min_max_age=1.0, default_max_age=1.0),
        # One unknown-kid refresh per hour: a key that was not cached before it signed would
        # show up as an unknown kid (and almost surely a rejection), not be papered over.
        unknown_kid=UnknownKidOptions(cooldown=3600.0),
    )
    lock = threading.Lock()
    kids: list[str] = []  # signing kids in order of first appearance
    counts = {"fresh": 0, "late": 0, "late_after_rotation": 0, "late_missed": 0}
    rejected: list[tuple[str, str, str, str]] = []
    errors: list[BaseException] = []
    late: list[tuple[float, str, str]] = []  # heap of (when, token, kid)
    stop = threading.Event()
    issuing_done = threading.Event()

    def verify(token: str, kid: str, phase: str) -> bool:
        try:
            verifier.verify(token)
        except TokenError as exc:
            with lock:
                rejected.append((phase, kid, exc.code, exc.detail))
            return False
        return True

    def issue() -> None:
        try:
            with httpx.Client(base_url=stack.server.url, headers=stack.server.admin) as client:
                while not stop.is_set():
                    token = stack.sign("fast", client)
                    kid = kid_of(token)
                    with lock:
                        if kid not in kids:
                            kids.append(kid)
                    if verify(token, kid, "fresh"):  # right after issue
                        exp = float(orjson.loads(_b64(token.split(".")[1]))["exp"])
                        with lock:
                            counts["fresh"] += 1
                            # Again half a second before it stops being valid (exp + leeway).
                            heapq.heappush(late, (exp + SKEW - 0.5, token, kid))
                    stop.wait(0.05)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def verify_late() -> None:
        try:
            while True:
                with lock:
                    due = late[0] if late and late[0][0] <= time.time() else None
                    if due is not None:
                        heapq.heappop(late)
                    elif not late and issuing_done.is_set():
                        return
                if due is None:
                    time.sleep(0.01)
                    continue
                when, token, kid = due
                try:
                    verifier.verify(token)
                except ExpiredTokenError:
                    if time.time() < when + 0.45:  # it should still have been valid
                        raise
                    with lock:  # this thread was scheduled too late: not a verdict
                        counts["late_missed"] += 1
                    continue
                except TokenError as exc:
                    with lock:
                        rejected.append(("late", kid, exc.code, exc.detail))
                    continue
                with lock:
                    counts["late"] += 1
                    if kid != kids[-1]:
                        counts["late_after_rotation"] += 1
        except BaseException as exc:
            errors.append(exc)

    with verifier:
        verifier.reload()  # a warm cache before the first token
        issuers = [threading.Thread(target=issue, name=f"e2e-issue-{i}") for i in range(3)]
        checker = threading.Thread(target=verify_late, name="e2e-late")
        for t in (*issuers, checker):
            t.start()
        try:
            # Four signing kids = three rotations seen by the tokens themselves; and enough
            # tokens to mean something, however slow the machine (or coverage) makes issuing.
            wait_for(
                lambda: (len(kids) >= 4 and counts["fresh"] >= 200) or errors,
                90.0,
                "three rotations and 200 tokens",
                tick=0.1,
            )
        finally:
            stop.set()
            for t in issuers:
                t.join(15)
            issuing_done.set()
            checker.join(15)
        status = verifier.cache.status()
        metrics = verifier.metrics.snapshot()
    elapsed = time.monotonic() - started
    print(f"fast: {counts}, {len(rejected)} rejected, {len(kids)} kids in {elapsed:.1f}s")
    print(f"fast: {metrics}")

    assert not errors, errors
    assert rejected == [], f"{len(rejected)} valid tokens rejected, e.g. {rejected[:5]}"
    assert counts["fresh"] >= 200, f"only {counts['fresh']} tokens in {elapsed:.1f}s"
    # Nearly every token was checked again late; those the checker reached too late on a
    # loaded machine are no verdict (late_missed), but most must be real verdicts.
    assert counts["late"] + counts["late_missed"] >= counts["fresh"] * 0.9
    assert counts["late"] >= counts["fresh"] * 0.5
    assert counts["late_after_rotation"] >= 20
    assert len(kids) >= 4
    assert metrics.unknown_kids == 0
    # Tokens the late checker reached only after exp + leeway (a loaded machine) are refused
    # as expired, and counted so: every other outcome is a success.
    missed = {"expired": counts["late_missed"]} if counts["late_missed"] else {}
    assert metrics.outcomes == {"ok": counts["fresh"] + counts["late"], **missed}
    # max-age honoured: each fetch is trusted 1 s, so the set was refetched (or revalidated
    # with a 304) about every 0.7 s rather than once.
    assert status.expires_at is not None and status.fetched_at is not None
    assert status.expires_at - status.fetched_at == pytest.approx(1.0)
    assert metrics.fetches + metrics.not_modified >= elapsed / 2
    # The rotations were the scheduler's, and the tokens saw them in the same order.
    rotations = [e for e in stack.audit("fast", "key.rotated") if e["actor"] == "scheduler"]
    assert len(rotations) >= 3
    # (On a slow start the scheduler may have rotated before the first token: then the
    # tokens' first kid is itself the key of a rotation, and the chain continues from it.)
    chain = [e["kid"] for e in rotations]
    start = chain.index(kids[0]) + 1 if kids[0] in chain else 0
    assert chain[start : start + len(kids) - 1] == kids[1:]


def _throwaway_es256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(pem).decode()


def _rejected_as_revoked(verifier: Verifier, token: str) -> RevokedKidError | None:
    try:
        verifier.verify(token)
    except RevokedKidError as exc:
        return exc
    return None


def test_rotate_and_revoke_reaches_stream_within_a_second_and_poll_within_its_interval(
    stack: Stack,
) -> None:
    """The current key is revoked: a verifier on the SSE stream refuses its tokens within 1 s,
    a polling verifier within its poll interval; the promoted key's tokens verify at once."""
    stack.create_tenant("steady", STEADY)
    poll_interval = 1.5
    # A JWKS lifetime far beyond the poll interval: a refresh would drop the revoked key too
    # (as unknown_kid), so here only the feed can be what refuses it.
    cache = CacheOptions(min_max_age=60.0)
    common: dict[str, Any] = {
        "issuer": stack.issuer("steady"),
        "algorithms": ["ES256"],
        "audience": AUDIENCE,
        "leeway": SKEW,
        "cache": cache,
    }
    streamed = Verifier(**common, revocations=RevocationFeed(mode="stream"))
    polled = Verifier(
        **common, revocations=RevocationFeed(mode="poll", poll_interval=poll_interval)
    )
    with streamed, polled:
        old = stack.sign("steady")
        for v in (streamed, polled):
            v.verify(old)  # warm caches; starts both feeds

        # Prove the stream is live before the real revocation (so what is measured below is a
        # push, not a connect and its snapshot): revoke a throwaway imported key first.
        imported = stack.api.post(
            "/api/v1/tenants/steady/keys/import",
            json={"key": _throwaway_es256_pem(), "format": "pem", "as_state": "previous"},
        )
        assert imported.status_code == 200, imported.text
        probe = next(e["kid"] for e in imported.json()["events"] if e["event"] == "key.imported")
        response = stack.api.post(
            f"/api/v1/tenants/steady/keys/{probe}/revoke", json={"reason": "e2e probe"}
        )
        assert response.status_code == 200, response.text
        wait_for(lambda: probe in streamed.cache.revoked, 5.0, "the probe revocation")

        keys = stack.keys("steady")
        revoked_kid, promoted = keys["current"], keys["next"]
        assert kid_of(old) == revoked_kid
        for v in (streamed, polled):
            assert promoted in v.cache.status().kids  # published as next, so cached
        fetches = {id(v): v.metrics.snapshot().fetches for v in (streamed, polled)}

        t0 = time.monotonic()
        response = stack.api.post(
            "/api/v1/tenants/steady/keys/rotate-and-revoke", json={"reason": "e2e: leaked"}
        )
        assert response.status_code == 200, response.text
        exc = wait_for(lambda: _rejected_as_revoked(streamed, old), 5.0, "stream revocation")
        streamed_after = time.monotonic() - t0
        assert exc.code == "revoked_kid"
        assert exc.action == "try_refresh"

        new = stack.sign("steady")
        assert kid_of(new) == promoted
        for v in (streamed, polled):
            assert v.verify(new)["sub"] == "e2e"  # at once: no fetch, no unknown kid

        exc = wait_for(lambda: _rejected_as_revoked(polled, old), 10.0, "poll revocation")
        polled_after = time.monotonic() - t0
        assert exc.code == "revoked_kid"
        assert exc.action == "try_refresh"
        for v in (streamed, polled):
            # A revocation makes the verifier fetch the JWKS at once (issue #12): one fetch per
            # revocation that reached it since the count (the poller may see the probe's only
            # now), and one more when a fetch was in flight. None was for an unknown kid.
            assert v.metrics.snapshot().fetches <= fetches[id(v)] + 4
            assert v.metrics.snapshot().unknown_kids == 0
            assert revoked_kid not in v.cache.status().kids

    print(f"steady: stream refused after {streamed_after:.3f}s, poll after {polled_after:.3f}s")
    assert streamed_after < 1.0, f"stream took {streamed_after:.2f}s"
    # Within the poll interval (the poll is jittered below it), plus one loopback round trip.
    assert polled_after < poll_interval + 0.5, f"poll took {polled_after:.2f}s"


def test_jwks_outage_serves_stale_within_limit_then_fails_clearly_then_recovers(
    stack: Stack,
) -> None:
    """The issuer is unreachable for longer than the cache lifetime: tokens keep verifying from
    the stale set up to the stale-if-error limit, then fail with jwks_unavailable (retry); when
    the issuer is back the verifier recovers by itself."""
    stack.create_tenant("outage", STEADY)
    stale_if_error = 3.0
    stale_calls: list[StaleInfo] = []
    verifier = Verifier(
        issuer=stack.issuer("outage"),
        algorithms=["ES256"],
        audience=AUDIENCE,
        leeway=SKEW,
        cache=CacheOptions(
            min_max_age=1.0, default_max_age=1.0, stale_if_error=stale_if_error, wait=1.0
        ),
        backoff=Backoff(initial=0.1, maximum=0.5),
        http=HTTPOptions(timeout=1.0),
        on_stale=stale_calls.append,
    )
    with verifier:
        verifier.verify(stack.sign("outage"))
        stack.proxy.cut()
        try:
            # The last good fetch is the one before the cut; once a fetch has failed after it,
            # the stale-if-error deadline is fixed.
            wait_for(lambda: verifier.cache.status().failures >= 1, 5.0, "a failed fetch")
            status = verifier.cache.status()
            assert status.expires_at is not None and status.stale_until is not None
            assert status.stale_until - status.expires_at == pytest.approx(stale_if_error)

            # Fresh tokens keep coming from the server (it is up; only its public side is cut).
            stale_ok, last_stale_ok = 0, 0.0
            while True:
                token = stack.sign("outage")
                now = time.time()
                try:
                    verifier.verify(token)
                except JWKSUnavailableError as exc:
                    failure, failed_at = exc, time.time()
                    break
                assert now < status.stale_until + 0.5, "verified past the stale-if-error limit"
                if now > status.expires_at:
                    stale_ok += 1
                    last_stale_ok = now
                time.sleep(0.05)
            # Used through the outage: many times, and until shortly before the limit (the
            # number of rounds depends on the machine's speed, the window is 3 s).
            assert stale_ok >= 5, "the stale set was not used through the outage"
            assert last_stale_ok >= status.stale_until - 1.0, "stale set dropped early"
            assert stale_calls, "on_stale was not called"
            stale_until = status.stale_until
            assert failed_at >= stale_until  # not one moment before the limit
            assert failure.action == "retry"
            assert failure.code in ("jwks_unavailable", "discovery_failed")
            assert "stale-if-error limit" in failure.detail
            # It stays failed (clearly) while the outage lasts.
            with pytest.raises(JWKSUnavailableError):
                verifier.verify(stack.sign("outage"))
        finally:
            stack.proxy.restore()

        restored = time.monotonic()

        def verifies() -> bool:
            try:
                verifier.verify(stack.sign("outage"))
            except JWKSUnavailableError:
                return False
            return True

        wait_for(verifies, 5.0, "recovery without reload()", tick=0.05)
        recovered_after = time.monotonic() - restored
        status = verifier.cache.status()
    print(
        f"outage: {stale_ok} stale verifications, failed {failed_at - stale_until:+.3f}s from "
        f"the limit, recovered {recovered_after:.3f}s after restore; {verifier.metrics.snapshot()}"
    )
    assert status.failures == 0
    assert status.last_error is None
    # Backoff is capped at 0.5 s: the first attempt after the restore succeeds.
    assert recovered_after < 2.0, f"recovery took {recovered_after:.2f}s"
