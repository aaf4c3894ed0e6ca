"""Decide, for ``diagnose``: pure rules over one :class:`~keyturn.diagnose.evidence.Evidence`.

Each rule is a small function ``Evidence -> Decision | None``; :data:`RULES` runs them in the
order a verifier checks a token, and the first that decides wins. A ``Decision`` is a
``Verdict`` (the class of failure, with its exit code) plus the likely cause, the fix and the
lines of evidence that support it. The verdict is chosen by what explains the failure best: a
token whose key vanished *and* which expired an hour ago is "expired" (the key retired
normally), while a live token whose key vanished is the 401-wave case. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyturn.diagnose._http import Fetch, parse_http_date
from keyturn.diagnose.evidence import Evidence
from keyturn.diagnose.jwks import JwksReport
from keyturn.diagnose.report import (
    CachingAssessment,
    DiscoveryReport,
    Finding,
    Verdict,
    relative,
)
from keyturn.durations import fmt_duration
from keyturn.errors import (
    AlgorithmNotAllowedError,
    AudienceMismatchError,
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    KeyLookupError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    TokenError,
    UnsupportedHeaderError,
)
from keyturn.jwks_http import discovery_url, plain_http_refused
from keyturn.tokens.claims import validate_claims
from keyturn.tokens.jws import verify_parsed
from keyturn.tokens.verify import select_key

# Without the issuer's own numbers we cannot know how long it pre-publishes a key. A day is
# an assumption, said so in the report: a cache lifetime beyond it is unsafe for nearly every
# issuer, and one under it may still be unsafe for an issuer that pre-publishes for less
# (pass ``overlap`` then).
ASSUMED_OVERLAP = 86400.0
ASSUMED_SOURCE = "assumed"
# ``Date`` has one-second resolution and crosses a network: smaller offsets are noise.
CLOCK_OFFSET_NOTICE = 5.0


@dataclass(frozen=True)
class Decision:
    """A rule's answer: the verdict, its likely cause, a summary, the fix, and why."""

    verdict: Verdict
    cause: str
    summary: str
    fix: str
    evidence: tuple[str, ...] = ()


Rule = Callable[[Evidence], "Decision | None"]


# --- the caching assessment (a finding, and the last rule's input) -------------------------
def assess_caching(ev: Evidence) -> CachingAssessment | None:
    """Whether the JWKS caching headers let verifiers see a new key before it signs."""
    j = ev.jwks
    if j is None or not j.fetch.ok:
        return None
    policy = ev.discovery.keyturn_policy if ev.discovery else None
    skew = ev.leeway
    if ev.overlap is not None:
        overlap, source = ev.overlap, "given"
    elif policy and "rotation_period" in policy:
        # keyturn creates the next key at the previous rotation: it is published for R.
        overlap, source = policy["rotation_period"], "keyturn policy (rotation period)"
        skew = policy.get("clock_skew", skew)
    elif ev.discovery is not None and ev.discovery.is_keyturn and _origin_c(ev.discovery):
        # keyturn refuses a policy with R < C + S and serves max-age=C on discovery and
        # JWKS alike: a JWKS lifetime longer than the discovery document's means something
        # in between lengthened it, beyond what keyturn's pre-publication covers.
        origin_c = _origin_c(ev.discovery)
        assert origin_c is not None
        overlap = origin_c + skew
        source = f"keyturn: pre-publishes for at least its max-age C={origin_c}s + skew"
    else:
        overlap, source = ASSUMED_OVERLAP, f"{ASSUMED_SOURCE} (the issuer publishes no policy)"
    cc = j.cache_control
    lifetime = cc.lifetime
    problems: list[str] = []
    notes: list[str] = []
    if lifetime is None and not (cc.no_store or cc.no_cache):
        expires = parse_http_date(j.fetch.headers.get("expires"))
        date = j.fetch.date
        if expires is not None and date is not None:
            lifetime = max(0, int(expires - date))
            notes.append(f"no max-age; Expires gives {fmt_duration(lifetime)}")
    if cc.no_store or cc.no_cache:
        notes.append("no-store/no-cache: every verifier revalidates, safe for rotation but costly")
    elif lifetime is None:
        problems.append(
            "Cache-Control max-age is missing: every verifier library and CDN picks its own "
            "lifetime (minutes to a day), so no issuer can know how long to pre-publish a key"
        )
    elif lifetime + skew > overlap:
        problems.append(
            f"caches may keep the JWKS for {fmt_duration(lifetime)} (+{fmt_duration(skew)} "
            f"skew), longer than the issuer publishes a key before signing with it "
            f"({fmt_duration(overlap)}, {source}): after a rotation, verifiers with a "
            "cached copy reject new tokens until it expires"
        )
    age = j.fetch.age
    if age is not None and lifetime is not None and age > lifetime:
        problems.append(
            f"a cache served this copy {fmt_duration(age)} after it left the origin, past its "
            f"max-age of {fmt_duration(lifetime)}: a cache is serving a stale JWKS"
        )
    if (
        policy
        and "jwks_max_age" in policy
        and cc.max_age is not None
        and cc.max_age != int(policy["jwks_max_age"])
    ):
        notes.append(
            f"the issuer's policy serves max-age={int(policy['jwks_max_age'])} but "
            f"max-age={cc.max_age} arrived: something in between rewrote Cache-Control"
        )
    known = not source.startswith(ASSUMED_SOURCE)
    safe: bool | None
    if problems:
        safe = False
    elif known or cc.no_store or cc.no_cache:
        safe = True
    else:
        safe = None  # within the assumption, but the issuer's real overlap is unknown
    if safe is None:
        notes.append(
            f"overlap unknown: assumed {fmt_duration(overlap)}; pass --overlap to judge exactly"
        )
    return CachingAssessment(safe, lifetime, overlap, source, skew, tuple(problems), tuple(notes))


# --- the rules -----------------------------------------------------------------------------
def token_malformed(ev: Evidence) -> Decision | None:
    """The token does not even parse: nothing else matters."""
    err = ev.parse_error
    if err is None:
        return None
    if isinstance(err, AlgorithmNotAllowedError):
        return Decision(
            Verdict.SIGNATURE_INVALID,
            "algorithm_not_accepted",
            f"the token is signed with alg {ev.token.alg!r}, which no keyturn verifier "
            "accepts (only RS256/384/512, PS256, ES256/384/512, EdDSA)",
            "sign with an asymmetric algorithm that the issuer publishes keys for; never "
            "accept 'none' or HMAC with a public key as the secret",
        )
    what = "unsupported header" if isinstance(err, UnsupportedHeaderError) else "malformed"
    assert isinstance(err, MalformedTokenError | UnsupportedHeaderError | TokenError)
    return Decision(
        Verdict.TOKEN_MALFORMED,
        err.code,
        f"the token is {what}: {err.detail}",
        "check what the client sends: the whole Authorization header value after 'Bearer ', "
        "not truncated, not an opaque access token, not double-encoded",
    )


def source_failed(ev: Evidence) -> Decision | None:
    """No usable discovery document or JWKS: the keys cannot be judged."""
    disc = ev.discovery
    if disc is not None and disc.error is not None and ev.jwks_url is None:
        unreachable = not disc.fetch.ok
        return Decision(
            Verdict.JWKS_UNREACHABLE if unreachable else Verdict.JWKS_INVALID,
            "discovery_unreachable" if unreachable else "discovery_invalid",
            f"the discovery document at {disc.fetch.url} could not be used: {disc.error}",
            "check the issuer URL (exact, as in the token's iss) and that the issuer serves "
            "/.well-known/openid-configuration to this network; or pass --jwks URL",
            _fetch_evidence(disc.fetch),
        )
    j = ev.jwks
    if j is None or j.error is None:
        return None
    if not j.fetch.ok:
        redirect = bool(j.fetch.redirects) and not ev.follow_redirects
        return Decision(
            Verdict.JWKS_UNREACHABLE,
            "redirect" if redirect else "unreachable",
            f"the JWKS at {j.fetch.url} could not be fetched: {j.error}",
            (
                "point verifiers at the final URL (they should not follow redirects)"
                if redirect
                else "check DNS, firewall and TLS from the verifier's network, and the "
                "issuer's health; verifiers keep serving their last good copy only so long"
            ),
            _fetch_evidence(j.fetch),
        )
    return Decision(
        Verdict.JWKS_INVALID,
        "invalid_jwks",
        f"the document at {j.fetch.url} is not a usable JWKS: {j.error}",
        "check that the URL is the JWKS (not an HTML login or error page, not the discovery "
        "document) and that it lists signature keys ('use': 'sig', supported kty/alg)",
        _fetch_evidence(j.fetch),
    )


def issuer_differs(ev: Evidence) -> Decision | None:
    """The token's ``iss`` is not the issuer asked about."""
    expected = ev.issuer
    if expected is None:
        return None
    iss = ev.token.claims.get("iss")
    if iss == expected:
        return None
    kid = ev.token.kid
    published = kid is not None and ev.jwks is not None and kid in ev.jwks.kids
    evidence = (f"token iss: {iss!r}", f"expected issuer: {expected!r}")
    if isinstance(iss, str) and iss.rstrip("/") == expected.rstrip("/"):
        return Decision(
            Verdict.ISSUER_MISMATCH,
            "trailing_slash",
            "the token's iss differs from the issuer only by a trailing slash; issuers are "
            "compared exactly",
            "configure the verifier with the issuer string exactly as the token carries it "
            "(or fix the issuer's configured URL)",
            evidence,
        )
    if published:
        return Decision(
            Verdict.ISSUER_MISMATCH,
            "issuer_string_differs",
            f"the token's key is published by {expected}, but its iss is {iss!r}: the issuer's "
            "configured URL and the one verifiers expect differ",
            "align the issuer's public URL (KEYTURN_PUBLIC_URL for keyturn) with the verifier's "
            "expected issuer",
            evidence,
        )
    return Decision(
        Verdict.ISSUER_MISMATCH,
        "wrong_environment",
        f"the token was issued by {iss!r}, not by {expected}, and its kid is not in this "
        "issuer's JWKS: it comes from another issuer or environment (staging vs production?)",
        f"send the token to services that trust {iss!r}, or get a token from {expected}; "
        f"to inspect its real issuer run: keyturn diagnose TOKEN --issuer {iss}",
        evidence,
    )


def _expired_decision(ev: Evidence, extra: tuple[str, ...] = ()) -> Decision | None:
    exp = ev.token.time("exp")
    if exp is None or ev.now < exp.value + ev.leeway:
        return None
    offset = ev.jwks.clock_offset if ev.jwks else None
    evidence = (f"exp {relative(exp.offset)} (leeway {fmt_duration(ev.leeway)})", *extra)
    if offset is not None:
        evidence += (f"JWKS server clock offset {offset:+.0f}s",)
        server_now = ev.now + offset
        if server_now < exp.value + ev.leeway:
            return Decision(
                Verdict.EXPIRED,
                "local_clock_ahead",
                f"the token expired {fmt_duration(-exp.offset)} ago by this machine's clock, "
                f"but this clock is {fmt_duration(-offset)} ahead of the issuer's: by the "
                "issuer's clock it is still valid",
                "fix NTP on the verifying host (timedatectl / chronyc tracking)",
                evidence,
            )
    return Decision(
        Verdict.EXPIRED,
        "token_expired",
        f"the token expired {fmt_duration(-exp.offset)} ago",
        "the client must refresh tokens before exp (check its token cache and refresh "
        "margin); verifiers answer 401 with the 'refresh' action, as they should",
        evidence,
    )


def _revoked_decision(ev: Evidence, kid: str, evidence: list[str]) -> Decision | None:
    entry = (ev.revoked or {}).get(kid)
    if entry is None:
        return None
    at = entry.get("revoked_at")
    when = f" {relative(at - ev.now)}" if isinstance(at, int | float) else ""
    reason = entry.get("reason") or "no reason given"
    evidence.append(f"revocation feed: {kid} revoked{when} ({reason})")
    still = ev.jwks is not None and kid in ev.jwks.kids
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "key_revoked",
        f"key {kid} was revoked{when} ({reason})"
        + (
            "; this copy of the JWKS still lists it, so a cache serves it stale"
            if still
            else "; revocation removes it from the JWKS at once"
        ),
        "clients must get a new token (verifiers answer 'try_refresh'); tokens signed by a "
        "revoked key never verify again. Check `keyturn audit list --event key.revoked`",
        tuple(evidence),
    )


def key_problem(ev: Evidence) -> Decision | None:
    """The kid is missing or revoked, or the key does not verify the signature."""
    j = ev.jwks
    if j is None or j.keyset is None or ev.parsed is None:
        return None
    kid = ev.token.kid
    try:
        key = select_key(ev.parsed, j.keyset)
    except KeyLookupError:
        return kid_missing(ev)
    if kid is not None and ev.revoked and kid in ev.revoked:
        revoked = _revoked_decision(ev, kid, [f"token kid: {kid}"])
        assert revoked is not None
        return revoked
    try:
        verify_parsed(ev.parsed, key)
    except AlgorithmNotAllowedError:
        algs = sorted(a.value for a in key.algs)
        return Decision(
            Verdict.SIGNATURE_INVALID,
            "wrong_algorithm",
            f"the token says alg {ev.parsed.alg.value} but key {kid} is published for "
            f"{', '.join(algs)}",
            "make the signer use the algorithm the key is published with (or publish the key "
            "with the algorithm it signs with); never let a verifier guess",
            (f"token alg: {ev.parsed.alg.value}", f"key algs: {', '.join(algs)}"),
        )
    except BadSignatureError:
        info = j.key(kid) if kid is not None else None
        if info is not None and info.kid_is_thumbprint is False:
            return Decision(
                Verdict.SIGNATURE_INVALID,
                "kid_reused",
                f"key {kid} is published, but the signature does not verify with it; this "
                "issuer names kids by hand (the kid is not the key's thumbprint), so the "
                "same kid was most likely reused for a different key",
                "give every new key a new kid (keyturn derives it from the key, RFC 7638) and "
                "keep publishing the old key until its tokens expire",
                (f"published thumbprint of {kid}: {info.thumbprint}",),
            )
        return Decision(
            Verdict.SIGNATURE_INVALID,
            "signed_by_other_key",
            f"key {kid} is published and its kid is its own thumbprint, yet the signature "
            "does not verify: the token was signed by another key that claims this kid "
            "(a signer that sets kid from configuration, not from its key) or was altered",
            "check which private key the signer loads against the published kid; reject "
            "the token (never retry a bad signature)",
        )
    return None


# --- the kid is not in the JWKS: its own chain of rules ------------------------------------
def _kid_evidence(j: JwksReport, kid: str) -> list[str]:
    published = ", ".join(j.kids) or "(none)"
    evidence = [f"token kid: {kid}", f"published kids: {published}"]
    f = j.fetch
    if f.headers.get("etag"):
        evidence.append(f"ETag: {f.headers['etag']}")
    if f.age is not None:
        evidence.append(f"Age: {f.age}s")
    return evidence


def kid_missing_here(ev: Evidence) -> Decision | None:
    """Explained without asking the origin: the token expired, has no kid, or was revoked."""
    j = ev.jwks
    if j is None:
        return None
    kid = ev.token.kid
    expired = _expired_decision(
        ev, (f"kid {kid} is not published either: normal once its tokens have expired",)
    )
    if expired is not None:
        return expired
    if kid is None:
        return Decision(
            Verdict.KID_NOT_PUBLISHED,
            "no_kid",
            "the token has no kid and the JWKS does not single out one key for its alg",
            "make the issuer put kid in the header (every rotation needs it)",
            (f"published kids: {', '.join(j.kids) or '(none)'}",),
        )
    return _revoked_decision(ev, kid, _kid_evidence(j, kid))


def stale_cache_confirmed(ev: Evidence) -> Decision | None:
    """The origin, asked past the caches, publishes the kid our copy lacks."""
    j, r, kid = ev.jwks, ev.refetch, ev.token.kid
    if j is None or r is None or kid is None or r.keyset is None or kid not in r.kids:
        return None
    evidence = _kid_evidence(j, kid)
    evidence.append(
        f"a no-cache request returned ETag {r.fetch.headers.get('etag', '-')} with kid {kid}"
    )
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "stale_cache",
        f"a cache in front of the JWKS serves an old copy without kid {kid}; the origin "
        "publishes it (confirmed by a request with Cache-Control: no-cache)",
        "purge the CDN/proxy cache for the JWKS URL, make it honour the origin's "
        "Cache-Control, and check the issuer pre-publishes keys for longer than the "
        "cache's lifetime",
        tuple(evidence),
    )


def stale_cache_upstream(ev: Evidence) -> Decision | None:
    """The JWKS checked (a gateway, a proxy, a CDN URL) lacks the kid, the issuer's own
    ``jwks_uri`` publishes it: a cache layer serves an old copy, even without an ``Age``
    header to admit it is a cache. Not another environment: this issuer has the key."""
    j, u, kid = ev.jwks, ev.upstream, ev.token.kid
    if j is None or u is None or kid is None or u.keyset is None or kid not in u.kids:
        return None
    if kid in j.kids:
        return None
    evidence = _kid_evidence(j, kid)
    evidence.append(
        f"the issuer's jwks_uri {u.fetch.url} (asked with no-cache) publishes kid {kid}"
    )
    if j.fetch.age is None:
        evidence.append(f"{j.fetch.url} sent no Age header: the cache does not say it is one")
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "stale_cache",
        f"{j.fetch.url} serves an old copy of the JWKS without kid {kid}, while the issuer's "
        f"jwks_uri {u.fetch.url} publishes it: a cache layer in between (gateway, proxy, CDN) "
        "serves the JWKS stale",
        "purge that layer's cache for the JWKS and make it honour the origin's Cache-Control "
        "(and send Age), or point verifiers at the issuer's jwks_uri",
        tuple(evidence),
    )


def stale_cache_signs(ev: Evidence) -> Decision | None:
    """A cache served the copy, and Age / Date say it is older than it should be."""
    j, kid = ev.jwks, ev.token.kid
    if j is None or kid is None:
        return None
    f = j.fetch
    iat = ev.token.time("iat")
    origin_at = f.date - (f.age or 0) if f.date is not None else None
    stale_signs: list[str] = []
    lifetime = j.cache_control.lifetime
    if f.age is not None and lifetime is not None and f.age > lifetime:
        stale_signs.append(f"Age {f.age}s exceeds max-age {lifetime}s")
    if f.served_by_cache and iat is not None and origin_at is not None and iat.value > origin_at:
        stale_signs.append(
            f"this copy left the origin {fmt_duration(iat.value - origin_at)} before the "
            "token was issued (Date - Age < iat)"
        )
    if not stale_signs:
        return None
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "stale_cache",
        f"kid {kid} is missing from a copy served by a cache, and the copy is older than "
        "it should be; the origin could not be reached past the cache to confirm",
        "purge the CDN/proxy cache for the JWKS URL and make it honour the origin's "
        "Cache-Control; compare with the issuer's JWKS fetched directly",
        tuple(_kid_evidence(j, kid) + stale_signs),
    )


def foreign_kid_kind(ev: Evidence) -> Decision | None:
    """The issuer names kids by thumbprint, and this kid is not one."""
    j, kid = ev.jwks, ev.token.kid
    if j is None or kid is None or not j.all_kids_are_thumbprints or _looks_like_thumbprint(kid):
        return None
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "wrong_environment",
        f"kid {kid!r} is not even of the kind this issuer uses (its kids are RFC 7638 "
        "thumbprints): the token was most likely signed by another issuer or environment",
        "check which issuer signed the token (its iss) and that the service is configured "
        "for that issuer's JWKS",
        tuple(_kid_evidence(j, kid)),
    )


def unknown_to_keyturn(ev: Evidence) -> Decision | None:
    """A keyturn issuer neither publishes nor revoked the kid: another instance signed."""
    j, kid = ev.jwks, ev.token.kid
    if j is None or kid is None:
        return None
    if ev.discovery is None or not ev.discovery.is_keyturn or ev.revoked is None:
        return None
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "wrong_environment",
        f"kid {kid} is neither published nor revoked by this keyturn issuer, which never "
        "signs with an unpublished key and unpublishes a live key only by revoking it: "
        "another keyturn instance (another environment, or a replica on another "
        "database) signed this token under the same issuer URL",
        "give each environment its own issuer URL (KEYTURN_PUBLIC_URL), and make every "
        "replica of one issuer share one database",
        tuple(_kid_evidence(j, kid)),
    )


def rotation_without_overlap(ev: Evidence) -> Decision | None:
    """What remains: the issuer signed before publishing, or unpublished too early."""
    j, kid = ev.jwks, ev.token.kid
    if j is None or kid is None:
        return None
    return Decision(
        Verdict.KID_NOT_PUBLISHED,
        "rotation_without_overlap",
        f"kid {kid} is not in the issuer's JWKS (origin checked with no-cache) although the "
        "token is still live: the issuer either signed with a key before publishing it, or "
        "removed or revoked the key while its tokens were live",
        "publish a key for at least the JWKS cache lifetime + clock skew before it signs, "
        "and keep it published until every token it signed has expired (2 x token TTL); "
        "if the key was revoked on purpose, clients must get new tokens",
        tuple(_kid_evidence(j, kid)),
    )


KID_MISSING_RULES: tuple[Rule, ...] = (
    kid_missing_here,
    stale_cache_confirmed,
    stale_cache_upstream,
    stale_cache_signs,
    foreign_kid_kind,
    unknown_to_keyturn,
    rotation_without_overlap,
)


def kid_missing(ev: Evidence) -> Decision | None:
    """The token's kid selects no key in the JWKS: the first kid rule that decides."""
    return _first(KID_MISSING_RULES, ev)


def _kid_lookup_fails(ev: Evidence) -> bool:
    j = ev.jwks
    if j is None or j.keyset is None or ev.parsed is None:
        return False
    try:
        select_key(ev.parsed, j.keyset)
    except KeyLookupError:
        return True
    return False


def claims_invalid(ev: Evidence) -> Decision | None:
    """exp, nbf, aud and the claim types, as a verifier checks them."""
    if ev.parsed is None:
        return None
    claims = ev.parsed.payload()
    try:
        validate_claims(claims, now=ev.now, leeway=ev.leeway, audience=ev.audience)
    except ExpiredTokenError:
        d = _expired_decision(ev)
        assert d is not None
        return d
    except NotYetValidError as exc:
        return _not_yet_valid(ev, exc)
    except AudienceMismatchError:
        return _audience(ev, claims)
    except MissingClaimError as exc:
        if ev.audience is not None and "aud" not in claims and "'aud'" in exc.detail:
            return _audience(ev, claims)
        return Decision(
            Verdict.CLAIMS_INVALID,
            exc.code,
            f"the token lacks a required claim: {exc.detail}",
            "make the issuer include exp (every verifier requires it)",
        )
    except ClaimError as exc:
        return Decision(
            Verdict.CLAIMS_INVALID,
            exc.code,
            f"a claim is malformed: {exc.detail}",
            "fix the issuer's claim types (exp/nbf/iat are numbers, aud a string or list)",
        )
    return None


def _audience(ev: Evidence, claims: dict[str, Any]) -> Decision:
    return Decision(
        Verdict.AUDIENCE_MISMATCH,
        "audience_mismatch",
        f"the token is for audience {claims.get('aud')!r}, not {ev.audience!r}",
        "request the token for this service's audience (the client's audience/resource "
        "parameter), or configure the service with the audience it is actually called with",
        (f"token aud: {claims.get('aud')!r}", f"expected: {ev.audience!r}"),
    )


def _not_yet_valid(ev: Evidence, exc: NotYetValidError) -> Decision:
    nbf = ev.token.time("nbf") or ev.token.time("iat")
    ahead = nbf.offset if nbf is not None else 0.0
    offset = ev.jwks.clock_offset if ev.jwks else None
    evidence = [f"{nbf.name if nbf else 'nbf'} {relative(ahead)}", exc.detail]
    if offset is not None:
        evidence.append(f"JWKS server clock offset {offset:+.0f}s")
        server_now = ev.now + offset
        if nbf is not None and server_now + ev.leeway >= nbf.value:
            return Decision(
                Verdict.NOT_YET_VALID,
                "local_clock_behind",
                f"the token is valid from {relative(ahead)} by this machine's clock, which is "
                f"{fmt_duration(offset)} behind the issuer's",
                "fix NTP on the verifying host (timedatectl / chronyc tracking)",
                tuple(evidence),
            )
    return Decision(
        Verdict.NOT_YET_VALID,
        "issuer_clock_ahead",
        f"the token's validity starts {relative(ahead)}: the signer's clock is ahead "
        "(the JWKS server's Date agrees with this machine)",
        "fix NTP on the signing host; verifier leeway (clock skew) covers small offsets only",
        tuple(evidence),
    )


def verified(ev: Evidence) -> Decision:
    """The token verifies: ok, unless the caching headers are unsafe for rotation."""
    c = assess_caching(ev)
    if c is not None and c.safe is False:
        return Decision(
            Verdict.CACHING_UNSAFE,
            "caching_unsafe",
            "the token verifies, but the JWKS caching headers are unsafe for rotation: "
            + "; ".join(c.problems),
            "serve Cache-Control: public, max-age=N with N + clock skew shorter than the time "
            "a key is published before it signs (keyturn enforces this: R >= C + S), and "
            "make CDNs honour it",
            c.problems,
        )
    kid = ev.token.kid
    return Decision(
        Verdict.OK,
        "verified",
        f"the token verifies: key {kid} is published, signature, time claims"
        + (" and audience" if ev.audience else "")
        + " are valid",
        "nothing to fix for this token; if a service still rejects it, compare that "
        "service's configured issuer, audience, algorithms and JWKS URL with these",
    )


def _origin_c(d: DiscoveryReport) -> int | None:
    return d.fetch.cache_control.max_age


def _looks_like_thumbprint(kid: str) -> bool:
    # A SHA-256 RFC 7638 thumbprint is 43 base64url characters.
    return len(kid) == 43 and all(c.isalnum() or c in "-_" for c in kid)


def _fetch_evidence(f: Fetch) -> tuple[str, ...]:
    out = [f"GET {f.url}: " + (f"HTTP {f.status}" if f.status else "no response")]
    if f.error:
        out.append(f.error)
    for status, loc in f.redirects:
        out.append(f"redirect {status} -> {loc}")
    ctype = f.headers.get("content-type")
    if ctype:
        out.append(f"Content-Type: {ctype}")
    return tuple(out)


# --- the rules, in order -------------------------------------------------------------------
RULES: tuple[Rule, ...] = (
    token_malformed,
    source_failed,
    issuer_differs,
    key_problem,
    claims_invalid,
    verified,
)


def _first(rules: tuple[Rule, ...], ev: Evidence) -> Decision | None:
    for rule in rules:
        d = rule(ev)
        if d is not None:
            return d
    return None


def decide(ev: Evidence) -> Decision:
    """The first rule of :data:`RULES` that decides (the last always does)."""
    d = _first(RULES, ev)
    assert d is not None, "the last rule always decides"
    return d


def needs_origin_check(ev: Evidence) -> bool:
    """Whether the rules need the JWKS asked for past the caches (``Evidence.refetch``).

    True exactly when :func:`decide` would reach the kid rules that read it: the token parses,
    the sources are usable, the issuer matches, the kid selects no key, and neither expiry,
    a missing kid nor a revocation explains it.
    """
    if ev.refetch is not None:
        return False
    if _first((token_malformed, source_failed, issuer_differs), ev) is not None:
        return False
    return _kid_lookup_fails(ev) and kid_missing_here(ev) is None


# --- findings: secondary observations, derived from the same evidence ----------------------
_UNTRUSTED_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")


def _exchange_findings(url: str, result: Fetch, follow: bool) -> list[Finding]:
    out: list[Finding] = []
    if plain_http_refused(url):
        out.append(
            Finding("warning", "plain_http", f"{url} is plain HTTP: verifiers should refuse it")
        )
    if follow:
        for status, location in result.redirects:
            out.append(Finding("warning", "redirect", f"{url} redirects ({status}) to {location}"))
    return out


def _jwks_findings(j: JwksReport) -> list[Finding]:
    out: list[Finding] = []
    for k in j.keys:
        if k.private_members:
            out.append(
                Finding(
                    "error",
                    "private_key_published",
                    f"key {k.kid or '#' + str(k.index)} publishes private members "
                    f"{list(k.private_members)}: treat it as compromised and revoke it",
                )
            )
        elif not k.usable:
            out.append(
                Finding(
                    "info",
                    "key_skipped",
                    f"key {k.kid or '#' + str(k.index)} is ignored by verifiers: {k.skip_reason}",
                )
            )
    offset = j.clock_offset
    if offset is not None and abs(offset) >= CLOCK_OFFSET_NOTICE:
        ahead = "ahead of" if offset > 0 else "behind"
        out.append(
            Finding(
                "warning",
                "clock_offset",
                f"the JWKS server's Date is {fmt_duration(abs(offset))} {ahead} this machine's "
                "clock (if a cache replays the origin's Date, add its Age)",
            )
        )
    return out


def findings(ev: Evidence, decision: Decision) -> tuple[Finding, ...]:
    """Everything worth saying besides the verdict, in the order the exchanges happened."""
    out: list[Finding] = []
    for name in _UNTRUSTED_KEY_HEADERS:
        if name in ev.token.header:
            out.append(
                Finding(
                    "info",
                    "untrusted_key_header",
                    f"header '{name}' is present; keyturn (and any safe verifier) ignores it "
                    "when choosing a key",
                )
            )
    follow = ev.follow_redirects
    d = ev.discovery
    if d is not None:
        asked = discovery_url(ev.issuer) if ev.issuer is not None else d.fetch.url
        out += _exchange_findings(asked, d.fetch, follow)
        if d.issuer is not None and d.issuer != ev.issuer:
            out.append(
                Finding(
                    "warning",
                    "discovery_issuer_mismatch",
                    f"the discovery document says issuer {d.issuer!r} but was fetched for "
                    f"{ev.issuer!r}; OpenID clients refuse a mismatch (check trailing slash, "
                    "scheme and host)",
                )
            )
        if ev.jwks_url and d.jwks_uri is not None and d.jwks_uri != ev.jwks_url:
            out.append(
                Finding(
                    "warning",
                    "jwks_uri_differs",
                    f"checking {ev.jwks_url} as asked, but the issuer publishes jwks_uri "
                    f"{d.jwks_uri}",
                )
            )
    j = ev.jwks
    if j is not None:
        out += _exchange_findings(ev.jwks_source or j.fetch.url, j.fetch, follow)
        out += _jwks_findings(j)
    if ev.revocations is not None:
        uri = d.revocations_uri if d is not None and d.revocations_uri else ev.revocations.url
        out += _exchange_findings(uri, ev.revocations, follow)
        if ev.revoked is None:
            out.append(
                Finding(
                    "info",
                    "revocations_unavailable",
                    f"the revocation feed {uri} could not be read: "
                    f"{ev.revocations.error or 'not a feed'}",
                )
            )
    if ev.refetch is not None and j is not None:
        out += _exchange_findings(j.fetch.url, ev.refetch.fetch, follow)
    out = list(dict.fromkeys(out))  # the no-cache refetch repeats some
    caching = assess_caching(ev)
    if (
        caching is not None
        and caching.safe is False
        and decision.verdict is not Verdict.CACHING_UNSAFE
    ):
        out += [Finding("warning", "caching_unsafe", p) for p in caching.problems]
    return tuple(out)
