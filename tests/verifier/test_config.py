"""JWKSConfig: the one checked value the verifiers pass down to their cache and its core."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from keyturn.errors import ConfigError
from keyturn.verifier import AsyncVerifier, CacheOptions, JWKSCache, Verifier
from keyturn.verifier._metrics import VerifierMetrics
from keyturn.verifier._options import DEFAULT_CACHE_OPTIONS, JWKSConfig

URL = "https://id.example/.well-known/jwks.json"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, "an issuer URL or a JWKS URL", id="nothing"),
        pytest.param({"jwks_url": "http://id.example/j"}, "must use https", id="plain-http"),
        pytest.param({"issuer": "ftp://id.example"}, "must use https", id="scheme"),
    ],
)
def test_config_is_checked_when_built(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JWKSConfig(**kwargs)


def test_defaults_are_the_public_defaults() -> None:
    c = JWKSConfig(jwks_url=URL)
    assert c.cache is DEFAULT_CACHE_OPTIONS
    assert isinstance(c.metrics, VerifierMetrics) and isinstance(c.rng, random.Random)
    with pytest.raises(AttributeError):
        c.jwks_url = "https://other.example/j"  # type: ignore[misc]


def test_verifier_passes_one_config_down() -> None:
    rng = random.Random(7)
    metrics = VerifierMetrics()
    options = CacheOptions(background=False)
    transport = httpx.MockTransport(lambda r: httpx.Response(500))
    with Verifier(
        algorithms=["ES256"],
        jwks_url=URL,
        cache=options,
        rng=rng,
        metrics=metrics,
        transport=transport,
    ) as v:
        config = v.cache.core.config
        assert (config.jwks_url, config.cache, config.rng, config.metrics) == (
            URL,
            options,
            rng,
            metrics,
        )
        assert v.metrics is metrics


def test_async_verifier_and_cache_build_the_same_value() -> None:
    v = AsyncVerifier(algorithms=["ES256"], jwks_url=URL, cache=CacheOptions(background=False))
    c = JWKSCache(jwks_url=URL, cache=CacheOptions(background=False))
    try:
        assert v.cache.core.config.cache == c.core.config.cache
        assert v.cache.core.config.jwks_url == c.core.config.jwks_url == URL
    finally:
        c.close()
        asyncio.run(v.aclose())


def test_from_config_builds_a_cache_without_keywords() -> None:
    config = JWKSConfig(jwks_url=URL, cache=CacheOptions(background=False))
    with JWKSCache.from_config(config) as cache:
        assert cache.core.config is config
