"""``diagnose``: why does this token fail? Header, keys, caching, time, and one verdict with a fix.

Two steps: :func:`~keyturn.diagnose.evidence.gather` does every HTTP exchange (discovery, the
JWKS its ``jwks_uri`` names, the revocation feed, a no-cache refetch when a kid is missing)
into one frozen :class:`~keyturn.diagnose.evidence.Evidence`; the pure rules of
:mod:`keyturn.diagnose.rules` then decide from that value alone (:func:`report`).
"""

from __future__ import annotations

import time

import httpx

from keyturn.diagnose._http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT
from keyturn.diagnose.evidence import (
    DEFAULT_LEEWAY,
    Evidence,
    describe_token,
    gather,
    normalise_token,
)
from keyturn.diagnose.report import DiagnoseReport, Verdict
from keyturn.diagnose.rules import (
    ASSUMED_OVERLAP,
    assess_caching,
    decide,
    findings,
    needs_origin_check,
)
from keyturn.errors import InvalidInputError

__all__ = [
    "ASSUMED_OVERLAP",
    "DEFAULT_LEEWAY",
    "describe_token",
    "diagnose",
    "report",
]


def diagnose(
    token: str | bytes,
    *,
    issuer: str | None = None,
    jwks_url: str | None = None,
    audience: str | None = None,
    now: float | None = None,
    client: httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    leeway: float = DEFAULT_LEEWAY,
    overlap: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    follow_redirects: bool = False,
) -> DiagnoseReport:
    """Diagnose why ``token`` does (not) verify against an issuer or a JWKS URL.

    ``issuer`` loads ``{issuer}/.well-known/openid-configuration`` and checks the token's
    ``iss`` against it; ``jwks_url`` names the key set directly (and wins over the discovery
    document's ``jwks_uri`` when both are given). ``now`` is injectable for tests; ``overlap``
    is how long the issuer publishes a key before it signs (known for a keyturn issuer that
    publishes its policy, otherwise assumed to be ``ASSUMED_OVERLAP``). Network failures never
    raise: they are verdicts. Only a call without ``issuer`` and ``jwks_url`` is refused.
    """
    if issuer is None and jwks_url is None:
        raise InvalidInputError("give an issuer URL or a JWKS URL to check the token against")
    t_now = time.time() if now is None else now
    own_client = client is None
    http = client if client is not None else httpx.Client()
    try:
        ev = gather(
            normalise_token(token),
            issuer=issuer,
            jwks_url=jwks_url,
            audience=audience,
            now=t_now,
            client=http,
            timeout=timeout,
            leeway=leeway,
            overlap=overlap,
            max_bytes=max_bytes,
            follow_redirects=follow_redirects,
            needs_origin_check=needs_origin_check,
        )
    finally:
        if own_client:
            http.close()
    return report(ev)


def report(ev: Evidence) -> DiagnoseReport:
    """Decide from gathered evidence (pure): the verdict, the findings and the caching view."""
    d = decide(ev)
    return DiagnoseReport(
        d.verdict,
        d.cause,
        d.summary,
        d.fix,
        ev.now,
        d.evidence,
        findings(ev, d),
        ev.token,
        ev.discovery,
        ev.jwks,
        ev.refetch,
        assess_caching(ev),
        verified=d.verdict in (Verdict.OK, Verdict.CACHING_UNSAFE),
        revoked=ev.revoked,
    )
