"""A Prometheus collector for verifier counters; ``prometheus_client`` is imported lazily.

It is not a dependency of the lean verifier install: ``pip install 'keyturn[prometheus]'``
(or add ``prometheus-client`` yourself). Without it, building a collector raises a
``ModuleNotFoundError`` that says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from keyturn.verifier._metrics import VerifierMetrics

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

DEFAULT_PREFIX = "keyturn_verifier"
EXTRA_HINT = (
    "keyturn.verifier.prometheus needs prometheus_client, which the verifier does not install: "
    "pip install 'keyturn[prometheus]' (or pip install prometheus-client)"
)


def require_prometheus_client() -> None:
    """``prometheus_client`` importable, else a ``ModuleNotFoundError`` naming the extra."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(EXTRA_HINT, name="prometheus_client") from None


class _HasMetrics(Protocol):
    @property
    def metrics(self) -> VerifierMetrics: ...


class VerifierCollector:
    """Exposes a verifier's counters on each scrape (no copy is kept between scrapes).

    Metrics (with ``prefix``, default ``keyturn_verifier``): ``_jwks_fetches_total``,
    ``_jwks_fetch_errors_total``, ``_jwks_not_modified_total``, ``_jwks_fetch_seconds``
    (summary: count and sum), ``_stale_served_total``, ``_unknown_kids_total``,
    ``_revocations_total``, ``_feed_errors_total``, ``_feed_too_large_total`` and ``_verifications_total{outcome="success"|"failure",
    reason="ok"|<error code>}`` (the contract in docs/metrics.md).
    ``labels`` are added to every sample (e.g. ``{"issuer": ...}`` for several verifiers).
    """

    def __init__(
        self,
        source: VerifierMetrics | _HasMetrics,
        *,
        prefix: str = DEFAULT_PREFIX,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        require_prometheus_client()  # at set-up, not at the first scrape
        self._metrics = source if isinstance(source, VerifierMetrics) else source.metrics
        self._prefix = prefix
        self._labels = dict(labels or {})

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, SummaryMetricFamily

        s = self._metrics.snapshot()
        p = self._prefix
        names = list(self._labels)
        values = list(self._labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"{p}_{name}", doc, labels=names)
            family.add_metric(values, value)
            return family

        yield counter("jwks_fetches", "JWKS fetch attempts (successes, 304s and errors)", s.fetches)
        yield counter("jwks_fetch_errors", "JWKS fetches that failed", s.fetch_errors)
        yield counter("jwks_not_modified", "JWKS fetches answered 304", s.not_modified)
        summary = SummaryMetricFamily(f"{p}_jwks_fetch_seconds", "JWKS fetch latency", labels=names)
        summary.add_metric(values, count_value=s.fetches, sum_value=s.fetch_seconds_total)
        yield summary
        yield counter(
            "stale_served", "Verifications served from an expired key set", s.stale_served
        )
        yield counter("unknown_kids", "Tokens whose kid was not in the key set", s.unknown_kids)
        yield counter("revocations", "Kids revoked (feed or API)", s.revocations)
        yield counter("feed_errors", "Revocation feed reads that failed", s.feed_errors)
        yield counter(
            "feed_too_large",
            "Revocation feed events or documents over the size cap (revocations not arriving)",
            s.feed_too_large,
        )
        # The metric-name contract (docs/metrics.md, deploy/prometheus/alerts.yml): outcome is
        # success/failure, reason is "ok" or the error code.
        outcomes = CounterMetricFamily(
            f"{p}_verifications",
            "Verifications by outcome and reason",
            labels=[*names, "outcome", "reason"],
        )
        for reason, count in sorted(s.outcomes.items()):
            outcome = "success" if reason == "ok" else "failure"
            outcomes.add_metric([*values, outcome, reason], count)
        yield outcomes


def register(
    source: VerifierMetrics | _HasMetrics,
    registry: CollectorRegistry | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    labels: Mapping[str, str] | None = None,
) -> VerifierCollector:
    """Register a ``VerifierCollector`` (default: the global registry) and return it."""
    require_prometheus_client()
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = VerifierCollector(source, prefix=prefix, labels=labels)
    registry.register(collector)
    return collector
