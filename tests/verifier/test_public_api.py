"""The public surface of keyturn.verifier is pinned: adding or removing a name is a decision."""

from __future__ import annotations

import keyturn.verifier


def test_all_is_pinned_and_sorted() -> None:
    assert keyturn.verifier.__all__ == [
        "DEFAULT_BACKOFF",
        "DEFAULT_BACKOFF_INITIAL",
        "DEFAULT_BACKOFF_JITTER",
        "DEFAULT_BACKOFF_MAXIMUM",
        "DEFAULT_BACKOFF_MULTIPLIER",
        "DEFAULT_CACHE_OPTIONS",
        "DEFAULT_COOLDOWN",
        "DEFAULT_FRESH_COOLDOWN",
        "DEFAULT_HTTP_OPTIONS",
        "DEFAULT_JITTER",
        "DEFAULT_LEEWAY",
        "DEFAULT_MAX_AGE",
        "DEFAULT_MAX_MAX_AGE",
        "DEFAULT_MAX_RESPONSE_BYTES",
        "DEFAULT_MIN_MAX_AGE",
        "DEFAULT_NEGATIVE_CACHE_SIZE",
        "DEFAULT_NEGATIVE_TTL",
        "DEFAULT_POLL_INTERVAL",
        "DEFAULT_REFRESH_AHEAD",
        "DEFAULT_REQUIRED_CLAIMS",
        "DEFAULT_REVOCATIONS",
        "DEFAULT_STALE_IF_ERROR",
        "DEFAULT_STREAM_READ_TIMEOUT",
        "DEFAULT_TIMEOUT",
        "DEFAULT_UNKNOWN_KID_OPTIONS",
        "DEFAULT_WAIT",
        "AsyncJWKSCache",
        "AsyncVerifier",
        "Backoff",
        "CacheOptions",
        "CacheStatus",
        "DiscoveryError",
        "FeedError",
        "FeedTooLargeError",
        "HTTPOptions",
        "JWKSCache",
        "MetricsSnapshot",
        "RevocationFeed",
        "StaleInfo",
        "UnknownKidOptions",
        "Verifier",
        "VerifierEvent",
        "VerifierMetrics",
    ]
    for name in keyturn.verifier.__all__:
        assert getattr(keyturn.verifier, name) is not None


def test_options_are_frozen_keyword_only_values() -> None:
    import dataclasses

    import pytest

    from keyturn.errors import ConfigError
    from keyturn.verifier import Backoff, CacheOptions, HTTPOptions, UnknownKidOptions

    for cls in (Backoff, CacheOptions, HTTPOptions, UnknownKidOptions):
        value = cls()
        assert value == cls()
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, 1)
        with pytest.raises(TypeError):
            cls(1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError):
        CacheOptions(min_max_age=100, max_max_age=10)
    with pytest.raises(ConfigError):
        HTTPOptions(timeout=0)
    assert CacheOptions().lifetime(5) == 60
    assert CacheOptions().lifetime(10**9) == 86400
