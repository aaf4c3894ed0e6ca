"""Issue #12 on the verifier's side: a revocation is acted on at once, a new set is trusted at once.

Each of these failed before the change: a revocation neither fetched nor reset the unknown-kid
cooldown, a new set kept the remembered misses, a verifier built like the README's had no feed,
and an oversized feed event only reached ``on_event``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from keyturn.clock import FakeClock
from keyturn.errors import RevokedKidError, UnknownKidError
from keyturn.verifier import (
    DEFAULT_POLL_INTERVAL,
    AsyncVerifier,
    RevocationFeed,
    UnknownKidOptions,
    Verifier,
    VerifierEvent,
)

from .conftest import ISSUER, FakeIssuer
from .test_revocations import PollFeed
from .test_unknown_kid import _forged

MakeVerifier = Callable[..., Verifier]


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_default_poll_interval_drops_a_revoked_key_within_15_seconds() -> None:
    # Jittered down by up to 10 %, plus one conditional GET: within 15 s with room to spare.
    assert DEFAULT_POLL_INTERVAL == 10.0


def test_a_revocation_fetches_at_once_past_the_unknown_kid_cooldown(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    old = issuer.add_key()
    verifier = make_verifier()  # default cooldown: 30 s
    verifier.verify(issuer.token(old))
    with pytest.raises(UnknownKidError):  # a recent miss: the cooldown is running
        verifier.verify(_forged(issuer, "some-random-kid"))
    # revoke-all: a fresh current key published, the old one revoked
    new = issuer.add_key()
    issuer.unpublish(old)
    fetches = issuer.fetches
    verifier.revoke([old])  # what the feed does when the revocation arrives
    _until(lambda: issuer.fetches > fetches and new in verifier.cache.status().kids)
    assert verifier.verify(issuer.token(new))["sub"] == "alice"
    with pytest.raises(RevokedKidError):
        verifier.verify(issuer.token(old))


def test_a_revocation_resets_the_cooldown_for_the_next_unknown_kid(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    # The fetch a revocation starts may be answered by a replica that has not seen the change;
    # the new key's first token must still be allowed its own refresh.
    old = issuer.add_key()
    verifier = make_verifier()
    verifier.verify(issuer.token(old))
    with pytest.raises(UnknownKidError):
        verifier.verify(_forged(issuer, "some-random-kid"))
    verifier.revoke([old])
    # The revocation's fetch is over (counted, and no longer the flight a caller would join).
    _until(lambda: verifier.metrics.snapshot().fetches >= 3 and verifier.cache._flight is None)
    new = issuer.add_key()  # published only now, after the revocation's fetch
    assert verifier.verify(issuer.token(new))["sub"] == "alice"


def test_a_new_key_set_forgets_remembered_misses(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    known = issuer.add_key()
    late = issuer.add_key()
    late_jwk = issuer.published.pop(late)  # not published yet
    verifier = make_verifier(unknown_kid=UnknownKidOptions(cooldown=30, negative_ttl=3600))
    verifier.verify(issuer.token(known))
    early_token = issuer.token(late)  # issued before any of the fetches below
    with pytest.raises(UnknownKidError):
        verifier.verify(early_token)  # a fetch, a miss remembered for an hour
    issuer.add_key()  # the set changes
    clock.advance(400)  # past max-age: the next verify fetches the new set
    verifier.verify(issuer.token(known))
    issuer.published[late] = late_jwk
    clock.advance(31)  # past the cooldown
    assert verifier.verify(early_token)["sub"] == "alice"


def test_a_token_issued_after_the_fetch_refreshes_inside_the_cooldown(
    issuer: FakeIssuer, clock: FakeClock, make_verifier: MakeVerifier
) -> None:
    # revoke-all before the revocation reaches this verifier: the fresh key's first token.
    old = issuer.add_key()
    verifier = make_verifier(revocations=None)
    verifier.verify(issuer.token(old))
    with pytest.raises(UnknownKidError):
        verifier.verify(_forged(issuer, "some-random-kid"))
    clock.advance(2)
    new = issuer.add_key()
    assert verifier.verify(issuer.token(new))["sub"] == "alice"
    # A replayed token issued before the fetch gets no such refresh.
    replay = _forged(issuer, "replayed-kid", iat=int(clock.now()) - 10)
    fetches = issuer.fetches
    with pytest.raises(UnknownKidError):
        verifier.verify(replay)
    assert issuer.fetches == fetches


def test_a_default_verifier_polls_the_feed_discovery_advertises(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    feed = PollFeed(issuer)
    feed.kids.append(kid)
    issuer.extra_discovery = {"keyturn_revocations_uri": ISSUER + "/revocations.json"}
    verifier = make_verifier()  # no revocations argument: the README's way
    verifier.start()
    _until(lambda: kid in verifier.cache.revoked)
    assert feed.requests, "the default verifier never polled the advertised feed"
    with pytest.raises(RevokedKidError):
        verifier.verify(issuer.token(kid))


def test_a_default_verifier_stays_quiet_without_an_advertised_feed(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    feed = PollFeed(issuer)
    events: list[VerifierEvent] = []
    verifier = make_verifier(on_event=events.append)
    verifier.verify(issuer.token(kid))
    _until(lambda: any(e.name == "feed_off" for e in events))
    assert feed.requests == []
    assert not any(e.name == "feed_error" for e in events)


def test_revocations_none_turns_the_default_feed_off(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    kid = issuer.add_key()
    issuer.extra_discovery = {"keyturn_revocations_uri": ISSUER + "/revocations.json"}
    events: list[VerifierEvent] = []
    verifier = make_verifier(revocations=None, on_event=events.append)
    verifier.verify(issuer.token(kid))
    verifier.start()
    assert verifier._feed is None
    assert issuer.discovery_requests == 1  # the key cache's own, no feed's


def test_an_oversized_feed_event_is_counted_and_logged(
    issuer: FakeIssuer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.add_key()
    url = ISSUER + "/revocations/stream"
    entry = {"kid": "k" * 43, "revoked_at": 1.0, "reason": "r" * 200}
    data = orjson.dumps({"revoked": [entry] * 1200})  # ~300 KB, over the 256 KiB cap
    body = b"event: snapshot\ndata: " + data + b"\n\n"
    issuer.routes[url] = lambda _r: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}
    )
    events: list[VerifierEvent] = []
    verifier = make_verifier(
        revocations=RevocationFeed(mode="stream", url=url), on_event=events.append
    )
    with caplog.at_level(logging.ERROR, logger="keyturn.verifier"):
        verifier.start()
        _until(
            lambda: (
                verifier.metrics.snapshot().feed_too_large >= 1
                and any(e.name == "feed_error" for e in events)
            )
        )
    assert verifier.metrics.snapshot().feed_errors >= 1
    assert "revocations are NOT arriving" in caplog.text
    errors = [e for e in events if e.name == "feed_error"]
    assert errors and "larger than" in str(errors[0].data["error"])


def test_async_a_revocation_fetches_at_once(issuer: FakeIssuer) -> None:
    old = issuer.add_key()

    async def main() -> None:
        async with AsyncVerifier(
            algorithms=["ES256"],
            issuer=ISSUER,
            transport=issuer.transport(),
            clock=issuer.clock,
            revocations=None,
        ) as verifier:
            await verifier.verify(issuer.token(old))
            with pytest.raises(UnknownKidError):
                await verifier.verify(_forged(issuer, "some-random-kid"))
            new = issuer.add_key()
            issuer.unpublish(old)
            verifier.revoke([old])
            for _ in range(250):
                if new in verifier.cache.status().kids:
                    break
                await asyncio.sleep(0.02)
            assert (await verifier.verify(issuer.token(new)))["sub"] == "alice"

    asyncio.run(main())
