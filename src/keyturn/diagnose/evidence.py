"""Gather, for ``diagnose``: every HTTP exchange happens here, into one frozen :class:`Evidence`.

The rules (``keyturn.diagnose.rules``) then decide from that value alone, without I/O. The one
exchange that depends on a finding, asking the origin past the caches for a kid missing from
the first copy, is asked for by a pure predicate (``rules.needs_origin_check``), so gathering
stays here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import orjson

from keyturn.diagnose._http import Fetch, fetch
from keyturn.diagnose.jwks import JwksReport, analyse_jwks
from keyturn.diagnose.report import DiscoveryReport, TimeClaim, TokenInfo
from keyturn.errors import TokenError
from keyturn.jwks_http import discovery_url
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_decode
from keyturn.tokens.jws import ParsedToken, parse_compact

DEFAULT_LEEWAY = 60.0
REGISTERED_SHOWN = ("iss", "aud", "sub", "azp", "jti")
TIME_CLAIMS = ("iat", "nbf", "exp")
POLICY_FIELDS = ("rotation_period", "token_ttl", "jwks_max_age", "clock_skew")
# A request that bypasses the caches between us and the origin.
NO_CACHE_HEADERS = {"Cache-Control": "no-cache", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Evidence:
    """Everything one diagnosis saw: the question asked, the token, and each HTTP exchange.

    Built by :func:`gather`, or literally in tests: the rules read nothing else.
    """

    now: float
    token: TokenInfo
    parsed: ParsedToken | None = None
    parse_error: TokenError | None = None
    # The question: what the caller gave.
    issuer: str | None = None
    jwks_url: str | None = None
    audience: str | None = None
    leeway: float = DEFAULT_LEEWAY
    overlap: float | None = None
    follow_redirects: bool = False
    # What the network said.
    discovery: DiscoveryReport | None = None
    jwks: JwksReport | None = None
    revocations: Fetch | None = None  # the feed's exchange, when the issuer announces one
    revoked: dict[str, dict[str, Any]] | None = None  # kid -> {revoked_at, reason}; None: unread
    refetch: JwksReport | None = None  # the JWKS asked for with no-cache
    # The issuer's own jwks_uri (no-cache), when the JWKS checked is another URL (a gateway).
    upstream: JwksReport | None = None

    @property
    def jwks_source(self) -> str | None:
        """The JWKS URL checked: the caller's, else the discovery document's ``jwks_uri``."""
        if self.jwks_url is not None:
            return self.jwks_url
        if self.discovery is not None and self.discovery.error is None:
            return self.discovery.jwks_uri
        return None


def normalise_token(token: str | bytes) -> str:
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    text = text.strip()
    # People paste whole header lines during incidents; accept them.
    for prefix in ("authorization:", "bearer "):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :].strip()
    return text


def describe_token(token: str, now: float) -> TokenInfo:
    """Decode header and claims for display only: nothing here is trusted or verified."""
    fingerprint = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16]
    parts = token.split(".")
    header: dict[str, Any] = {}
    claims: dict[str, Any] = {}
    error: str | None = None
    sig_len = 0
    if len(parts) != 3:
        error = f"a compact JWS has 3 dot-separated parts, this has {len(parts)}"
    else:
        try:
            h = orjson.loads(b64url_decode(parts[0]))
            p = orjson.loads(b64url_decode(parts[1]))
            sig_len = len(b64url_decode(parts[2])) if parts[2] else 0
        except (ValueError, orjson.JSONDecodeError) as exc:
            error = f"header or payload is not base64url JSON: {exc}"
        else:
            header = h if isinstance(h, dict) else {}
            claims = p if isinstance(p, dict) else {}
            if not isinstance(h, dict) or not isinstance(p, dict):
                error = "header or payload is not a JSON object"
    shown_header: dict[str, Any] = {
        k: header[k] for k in ("alg", "kid", "typ", "cty") if k in header
    }
    for k in sorted(header.keys() - shown_header.keys()):
        # jku/x5u/jwk/x5c are attacker-controlled pointers; show that they exist, not content.
        shown_header[k] = "(present)"
    shown = {k: claims[k] for k in REGISTERED_SHOWN if k in claims}
    times: list[TimeClaim] = []
    for name in TIME_CLAIMS:
        v = claims.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            times.append(TimeClaim(name, float(v), now))
            shown[name] = v
        elif v is not None:
            shown[name] = v
    others = tuple(sorted(claims.keys() - set(shown)))
    return TokenInfo(shown_header, shown, tuple(times), others, sig_len, fingerprint, error)


def read_discovery(result: Fetch) -> DiscoveryReport:
    """What a discovery exchange says (pure: the fetch is already done)."""
    if not result.ok or result.body is None:
        return DiscoveryReport(result, error=result.error or "no body")
    try:
        doc = orjson.loads(result.body)
    except orjson.JSONDecodeError as exc:
        return DiscoveryReport(result, error=f"discovery document is not JSON: {exc}")
    if not isinstance(doc, dict):
        return DiscoveryReport(result, error="discovery document is not an object")
    iss = doc.get("issuer")
    uri = doc.get("jwks_uri")
    algs = doc.get("id_token_signing_alg_values_supported")
    policy = doc.get("keyturn_policy")
    rev_uri = doc.get("keyturn_revocations_uri")
    kt: dict[str, float] | None = None
    if isinstance(policy, dict):
        kt = {
            k: float(policy[k])
            for k in POLICY_FIELDS
            if isinstance(policy.get(k), int | float) and not isinstance(policy.get(k), bool)
        }
    error = None
    if not isinstance(uri, str) or not uri:
        error = "discovery document has no jwks_uri"
    return DiscoveryReport(
        result,
        iss if isinstance(iss, str) else None,
        uri if isinstance(uri, str) else None,
        tuple(a for a in algs if isinstance(a, str)) if isinstance(algs, list) else (),
        kt or None,
        rev_uri if isinstance(rev_uri, str) and rev_uri else None,
        error,
    )


def read_revocations(result: Fetch) -> dict[str, dict[str, Any]] | None:
    """keyturn's feed of revoked kids, or None when the exchange is not such a feed (pure)."""
    try:
        doc = orjson.loads(result.body) if result.ok and result.body is not None else None
    except orjson.JSONDecodeError:
        doc = None
    entries = doc.get("revoked") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return None
    revoked: dict[str, dict[str, Any]] = {}
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("kid"), str):
            revoked[e["kid"]] = {"revoked_at": e.get("revoked_at"), "reason": e.get("reason")}
    return revoked


def gather(
    token: str,
    *,
    issuer: str | None,
    jwks_url: str | None,
    audience: str | None,
    now: float,
    client: httpx.Client,
    timeout: float,
    leeway: float,
    overlap: float | None,
    max_bytes: int,
    follow_redirects: bool,
    needs_origin_check: Callable[[Evidence], bool],
) -> Evidence:
    """Do every HTTP exchange the diagnosis needs, in a verifier's order, and return the lot."""

    def get(url: str, headers: dict[str, str] | None = None) -> Fetch:
        return fetch(
            client,
            url,
            timeout=timeout,
            max_bytes=max_bytes,
            follow_redirects=follow_redirects,
            extra_headers=headers,
        )

    parsed: ParsedToken | None = None
    parse_error: TokenError | None = None
    try:
        parsed = parse_compact(token, allowed_algs=frozenset(Alg))
    except TokenError as exc:
        parse_error = exc
    ev = Evidence(
        now,
        describe_token(token, now),
        parsed,
        parse_error,
        issuer,
        jwks_url,
        audience,
        leeway,
        overlap,
        follow_redirects,
    )
    if issuer is not None:
        ev = replace(ev, discovery=read_discovery(get(discovery_url(issuer))))
    source = ev.jwks_source
    if source is not None:
        ev = replace(ev, jwks=analyse_jwks(get(source), now))
    feed = ev.discovery.revocations_uri if ev.discovery is not None else None
    if parse_error is None and ev.jwks is not None and ev.jwks.ok and feed is not None:
        result = get(feed)
        ev = replace(ev, revocations=result, revoked=read_revocations(result))
    if ev.jwks is not None and needs_origin_check(ev):
        # Ask past the caches: a kid present there but not in our copy proves a stale cache.
        ev = replace(ev, refetch=analyse_jwks(get(ev.jwks.fetch.url, NO_CACHE_HEADERS), now))
        uri = upstream_jwks_uri(ev)
        if uri is not None:
            # A gateway in front may ignore no-cache: ask the issuer's own jwks_uri as well.
            ev = replace(ev, upstream=analyse_jwks(get(uri, NO_CACHE_HEADERS), now))
    return ev


def upstream_jwks_uri(ev: Evidence) -> str | None:
    """The discovery document's ``jwks_uri`` when the JWKS checked is another URL."""
    d = ev.discovery
    if d is None or d.error is not None or d.jwks_uri is None or ev.jwks is None:
        return None
    return d.jwks_uri if d.jwks_uri != ev.jwks.fetch.url else None
