"""``diagnose``: why does this token fail? Header, keys, caching, time, and one verdict with a fix.

The checks run in the order a verifier runs them, but the verdict is chosen by what explains
the failure best: a token whose key vanished *and* which expired an hour ago is "expired" (the
key retired normally), while a live token whose key vanished is the 401-wave case.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from keyturn.diagnose._http import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    Fetch,
    fetch,
    parse_http_date,
)
from keyturn.diagnose.jwks import JwksReport, analyse_jwks
from keyturn.diagnose.report import (
    CachingAssessment,
    DiagnoseReport,
    DiscoveryReport,
    Finding,
    TimeClaim,
    TokenInfo,
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
    InvalidInputError,
    KeyLookupError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    TokenError,
    UnsupportedHeaderError,
)
from keyturn.jwks_http import discovery_url, plain_http_refused
from keyturn.keys.algorithms import Alg
from keyturn.keys.b64 import b64url_decode
from keyturn.tokens.claims import validate_claims
from keyturn.tokens.jws import ParsedToken, parse_compact, verify_parsed
from keyturn.tokens.verify import select_key

# Without the issuer's own numbers we cannot know how long it pre-publishes a key. A day is
# an assumption, said so in the report: a cache lifetime beyond it is unsafe for nearly every
# issuer, and one under it may still be unsafe for an issuer that pre-publishes for less
# (pass ``overlap`` then).
ASSUMED_OVERLAP = 86400.0
ASSUMED_SOURCE = "assumed"
DEFAULT_LEEWAY = 60.0
# ``Date`` has one-second resolution and crosses a network: smaller offsets are noise.
CLOCK_OFFSET_NOTICE = 5.0
REGISTERED_SHOWN = ("iss", "aud", "sub", "azp", "jti")
TIME_CLAIMS = ("iat", "nbf", "exp")
POLICY_FIELDS = ("rotation_period", "token_ttl", "jwks_max_age", "clock_skew")


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
        return _Diagnosis(
            _normalise(token), issuer, jwks_url, audience, t_now, http, timeout, leeway,
            overlap, max_bytes, follow_redirects,
        ).run()  # fmt: skip
    finally:
        if own_client:
            http.close()


def _normalise(token: str | bytes) -> str:
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


@dataclass(frozen=True)
class _Decision:
    verdict: Verdict
    cause: str
    summary: str
    fix: str
    evidence: tuple[str, ...] = ()


class _Diagnosis:
    """One run: gathers facts, then decides. Kept as a class so each step reads like prose."""

    def __init__(
        self,
        token: str,
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
    ) -> None:
        self.token = token
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audience = audience
        self.now = now
        self.client = client
        self.timeout = timeout
        self.leeway = leeway
        self.overlap = overlap
        self.max_bytes = max_bytes
        self.follow = follow_redirects
        self.findings: list[Finding] = []
        self.info = describe_token(token, now)
        self.parsed: ParsedToken | None = None
        self.parse_error: TokenError | None = None
        self.discovery: DiscoveryReport | None = None
        self.jwks: JwksReport | None = None
        self.refetch: JwksReport | None = None
        self.caching: CachingAssessment | None = None
        self.revoked: dict[str, dict[str, Any]] | None = None

    # --- facts ---------------------------------------------------------------------------
    def _get(self, url: str, headers: dict[str, str] | None = None) -> Fetch:
        if plain_http_refused(url):
            self.findings.append(
                Finding("warning", "plain_http", f"{url} is plain HTTP: verifiers should refuse it")
            )
        result = fetch(
            self.client,
            url,
            timeout=self.timeout,
            max_bytes=self.max_bytes,
            follow_redirects=self.follow,
            extra_headers=headers,
        )
        for status, location in result.redirects:
            if self.follow:
                self.findings.append(
                    Finding("warning", "redirect", f"{url} redirects ({status}) to {location}")
                )
        return result

    def _parse(self) -> None:
        try:
            self.parsed = parse_compact(self.token, allowed_algs=frozenset(Alg))
        except TokenError as exc:
            self.parse_error = exc
        hdr = self.info.header
        for name in ("jku", "x5u", "jwk", "x5c"):
            if name in hdr:
                self.findings.append(
                    Finding(
                        "info",
                        "untrusted_key_header",
                        f"header '{name}' is present; keyturn (and any safe verifier) ignores it "
                        "when choosing a key",
                    )
                )

    def _load_discovery(self) -> None:
        assert self.issuer is not None
        url = discovery_url(self.issuer)
        result = self._get(url)
        if not result.ok or result.body is None:
            self.discovery = DiscoveryReport(result, error=result.error or "no body")
            return
        try:
            doc = orjson.loads(result.body)
        except orjson.JSONDecodeError as exc:
            self.discovery = DiscoveryReport(result, error=f"discovery document is not JSON: {exc}")
            return
        if not isinstance(doc, dict):
            self.discovery = DiscoveryReport(result, error="discovery document is not an object")
            return
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
        self.discovery = DiscoveryReport(
            result,
            iss if isinstance(iss, str) else None,
            uri if isinstance(uri, str) else None,
            tuple(a for a in algs if isinstance(a, str)) if isinstance(algs, list) else (),
            kt or None,
            rev_uri if isinstance(rev_uri, str) and rev_uri else None,
            error,
        )
        if isinstance(iss, str) and iss != self.issuer:
            self.findings.append(
                Finding(
                    "warning",
                    "discovery_issuer_mismatch",
                    f"the discovery document says issuer {iss!r} but was fetched for "
                    f"{self.issuer!r}; OpenID clients refuse a mismatch (check trailing slash, "
                    "scheme and host)",
                )
            )
        if self.jwks_url and isinstance(uri, str) and uri != self.jwks_url:
            self.findings.append(
                Finding(
                    "warning",
                    "jwks_uri_differs",
                    f"checking {self.jwks_url} as asked, but the issuer publishes jwks_uri {uri}",
                )
            )

    def _load_jwks(self, url: str) -> None:
        self.jwks = analyse_jwks(self._get(url), self.now)
        j = self.jwks
        for k in j.keys:
            if k.private_members:
                self.findings.append(
                    Finding(
                        "error",
                        "private_key_published",
                        f"key {k.kid or '#' + str(k.index)} publishes private members "
                        f"{list(k.private_members)}: treat it as compromised and revoke it",
                    )
                )
            elif not k.usable:
                self.findings.append(
                    Finding(
                        "info",
                        "key_skipped",
                        f"key {k.kid or '#' + str(k.index)} is ignored by verifiers: {k.skip_reason}",
                    )
                )
        offset = j.clock_offset
        if offset is not None and abs(offset) >= CLOCK_OFFSET_NOTICE:
            ahead = "ahead of" if offset > 0 else "behind"
            self.findings.append(
                Finding(
                    "warning",
                    "clock_offset",
                    f"the JWKS server's Date is {fmt_duration(abs(offset))} {ahead} this machine's "
                    "clock (if a cache replays the origin's Date, add its Age)",
                )
            )

    def _load_revocations(self) -> None:
        """keyturn's feed of revoked kids: turns "kid not published" into "kid revoked"."""
        uri = self.discovery.revocations_uri if self.discovery else None
        if uri is None:
            return
        result = self._get(uri)
        revoked: dict[str, dict[str, Any]] = {}
        try:
            doc = orjson.loads(result.body) if result.ok and result.body is not None else None
        except orjson.JSONDecodeError:
            doc = None
        entries = doc.get("revoked") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            self.findings.append(
                Finding(
                    "info",
                    "revocations_unavailable",
                    f"the revocation feed {uri} could not be read: {result.error or 'not a feed'}",
                )
            )
            return
        for e in entries:
            if isinstance(e, dict) and isinstance(e.get("kid"), str):
                revoked[e["kid"]] = {"revoked_at": e.get("revoked_at"), "reason": e.get("reason")}
        self.revoked = revoked

    def _revoked_decision(self, kid: str, evidence: list[str]) -> _Decision | None:
        entry = (self.revoked or {}).get(kid)
        if entry is None:
            return None
        at = entry.get("revoked_at")
        when = f" {relative(at - self.now)}" if isinstance(at, int | float) else ""
        reason = entry.get("reason") or "no reason given"
        evidence.append(f"revocation feed: {kid} revoked{when} ({reason})")
        still = self.jwks is not None and kid in self.jwks.kids
        return _Decision(
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

    def _assess_caching(self) -> None:
        j = self.jwks
        if j is None or not j.fetch.ok:
            return
        policy = self.discovery.keyturn_policy if self.discovery else None
        skew = self.leeway
        if self.overlap is not None:
            overlap, source = self.overlap, "given"
        elif policy and "rotation_period" in policy:
            # keyturn creates the next key at the previous rotation: it is published for R.
            overlap, source = policy["rotation_period"], "keyturn policy (rotation period)"
            skew = policy.get("clock_skew", skew)
        elif self.discovery is not None and self.discovery.is_keyturn and _origin_c(self.discovery):
            # keyturn refuses a policy with R < C + S and serves max-age=C on discovery and
            # JWKS alike: a JWKS lifetime longer than the discovery document's means something
            # in between lengthened it, beyond what keyturn's pre-publication covers.
            origin_c = _origin_c(self.discovery)
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
            notes.append(
                "no-store/no-cache: every verifier revalidates, safe for rotation but costly"
            )
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
        self.caching = CachingAssessment(
            safe, lifetime, overlap, source, skew, tuple(problems), tuple(notes)
        )

    def _refetch_no_cache(self) -> None:
        """Ask past the caches; a kid present there but not in our copy proves a stale cache."""
        assert self.jwks is not None
        self.refetch = analyse_jwks(
            self._get(self.jwks.fetch.url, {"Cache-Control": "no-cache", "Pragma": "no-cache"}),
            self.now,
        )

    # --- decision ------------------------------------------------------------------------
    def run(self) -> DiagnoseReport:
        self._parse()
        jwks_url = self.jwks_url
        if self.issuer is not None:
            self._load_discovery()
            if jwks_url is None and self.discovery is not None:
                jwks_url = self.discovery.jwks_uri if self.discovery.error is None else None
        if jwks_url is not None:
            self._load_jwks(jwks_url)
        if self.parse_error is None and self.jwks is not None and self.jwks.ok:
            self._load_revocations()
        self._assess_caching()
        d = self._decide()
        findings = list(dict.fromkeys(self.findings))  # the no-cache refetch repeats some
        if (
            self.caching is not None
            and self.caching.safe is False
            and d.verdict is not Verdict.CACHING_UNSAFE
        ):
            for p in self.caching.problems:
                findings.append(Finding("warning", "caching_unsafe", p))
        return DiagnoseReport(
            d.verdict,
            d.cause,
            d.summary,
            d.fix,
            self.now,
            d.evidence,
            tuple(findings),
            self.info,
            self.discovery,
            self.jwks,
            self.refetch,
            self.caching,
            verified=d.verdict in (Verdict.OK, Verdict.CACHING_UNSAFE),
            revoked=self.revoked,
        )

    def _decide(self) -> _Decision:
        for step in self._steps():
            d = step()
            if d is not None:
                return d
        raise AssertionError("the last step always decides")  # pragma: no cover

    def _steps(self) -> list[Callable[[], _Decision | None]]:
        return [
            self._malformed,
            self._source_failed,
            self._issuer,
            self._key,
            self._claims,
            self._caching_verdict,
        ]

    def _malformed(self) -> _Decision | None:
        err = self.parse_error
        if err is None:
            return None
        if isinstance(err, AlgorithmNotAllowedError):
            return _Decision(
                Verdict.SIGNATURE_INVALID,
                "algorithm_not_accepted",
                f"the token is signed with alg {self.info.alg!r}, which no keyturn verifier "
                "accepts (only RS256/384/512, PS256, ES256/384/512, EdDSA)",
                "sign with an asymmetric algorithm that the issuer publishes keys for; never "
                "accept 'none' or HMAC with a public key as the secret",
            )
        what = "unsupported header" if isinstance(err, UnsupportedHeaderError) else "malformed"
        assert isinstance(err, MalformedTokenError | UnsupportedHeaderError | TokenError)
        return _Decision(
            Verdict.TOKEN_MALFORMED,
            err.code,
            f"the token is {what}: {err.detail}",
            "check what the client sends: the whole Authorization header value after 'Bearer ', "
            "not truncated, not an opaque access token, not double-encoded",
        )

    def _source_failed(self) -> _Decision | None:
        disc = self.discovery
        if disc is not None and disc.error is not None and self.jwks_url is None:
            unreachable = not disc.fetch.ok
            return _Decision(
                Verdict.JWKS_UNREACHABLE if unreachable else Verdict.JWKS_INVALID,
                "discovery_unreachable" if unreachable else "discovery_invalid",
                f"the discovery document at {disc.fetch.url} could not be used: {disc.error}",
                "check the issuer URL (exact, as in the token's iss) and that the issuer serves "
                "/.well-known/openid-configuration to this network; or pass --jwks URL",
                _fetch_evidence(disc.fetch),
            )
        j = self.jwks
        assert j is not None
        if j.error is None:
            return None
        if not j.fetch.ok:
            redirect = bool(j.fetch.redirects) and not self.follow
            return _Decision(
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
        return _Decision(
            Verdict.JWKS_INVALID,
            "invalid_jwks",
            f"the document at {j.fetch.url} is not a usable JWKS: {j.error}",
            "check that the URL is the JWKS (not an HTML login or error page, not the discovery "
            "document) and that it lists signature keys ('use': 'sig', supported kty/alg)",
            _fetch_evidence(j.fetch),
        )

    def _expected_issuer(self) -> str | None:
        if self.issuer is not None:
            return self.issuer
        return None

    def _issuer(self) -> _Decision | None:
        expected = self._expected_issuer()
        if expected is None:
            return None
        iss = self.info.claims.get("iss")
        if iss == expected:
            return None
        j = self.jwks
        assert j is not None
        kid = self.info.kid
        published = kid is not None and kid in j.kids
        evidence = (f"token iss: {iss!r}", f"expected issuer: {expected!r}")
        if isinstance(iss, str) and iss.rstrip("/") == expected.rstrip("/"):
            return _Decision(
                Verdict.ISSUER_MISMATCH,
                "trailing_slash",
                "the token's iss differs from the issuer only by a trailing slash; issuers are "
                "compared exactly",
                "configure the verifier with the issuer string exactly as the token carries it "
                "(or fix the issuer's configured URL)",
                evidence,
            )
        if published:
            return _Decision(
                Verdict.ISSUER_MISMATCH,
                "issuer_string_differs",
                f"the token's key is published by {expected}, but its iss is {iss!r}: the issuer's "
                "configured URL and the one verifiers expect differ",
                "align the issuer's public URL (KEYTURN_PUBLIC_URL for keyturn) with the verifier's "
                "expected issuer",
                evidence,
            )
        return _Decision(
            Verdict.ISSUER_MISMATCH,
            "wrong_environment",
            f"the token was issued by {iss!r}, not by {expected}, and its kid is not in this "
            "issuer's JWKS: it comes from another issuer or environment (staging vs production?)",
            f"send the token to services that trust {iss!r}, or get a token from {expected}; "
            f"to inspect its real issuer run: keyturn diagnose TOKEN --issuer {iss}",
            evidence,
        )

    def _expired_decision(self, extra: tuple[str, ...] = ()) -> _Decision | None:
        exp = self.info.time("exp")
        if exp is None or self.now < exp.value + self.leeway:
            return None
        offset = self.jwks.clock_offset if self.jwks else None
        evidence = (f"exp {relative(exp.offset)} (leeway {fmt_duration(self.leeway)})", *extra)
        if offset is not None:
            evidence += (f"JWKS server clock offset {offset:+.0f}s",)
            server_now = self.now + offset
            if server_now < exp.value + self.leeway:
                return _Decision(
                    Verdict.EXPIRED,
                    "local_clock_ahead",
                    f"the token expired {fmt_duration(-exp.offset)} ago by this machine's clock, "
                    f"but this clock is {fmt_duration(-offset)} ahead of the issuer's: by the "
                    "issuer's clock it is still valid",
                    "fix NTP on the verifying host (timedatectl / chronyc tracking)",
                    evidence,
                )
        return _Decision(
            Verdict.EXPIRED,
            "token_expired",
            f"the token expired {fmt_duration(-exp.offset)} ago",
            "the client must refresh tokens before exp (check its token cache and refresh "
            "margin); verifiers answer 401 with the 'refresh' action, as they should",
            evidence,
        )

    def _key(self) -> _Decision | None:
        j = self.jwks
        assert j is not None and j.keyset is not None and self.parsed is not None
        kid = self.info.kid
        try:
            key = select_key(self.parsed, j.keyset)
        except KeyLookupError:
            return self._kid_missing()
        if kid is not None and self.revoked and kid in self.revoked:
            revoked = self._revoked_decision(kid, [f"token kid: {kid}"])
            assert revoked is not None
            return revoked
        try:
            verify_parsed(self.parsed, key)
        except AlgorithmNotAllowedError:
            algs = sorted(a.value for a in key.algs)
            return _Decision(
                Verdict.SIGNATURE_INVALID,
                "wrong_algorithm",
                f"the token says alg {self.parsed.alg.value} but key {kid} is published for "
                f"{', '.join(algs)}",
                "make the signer use the algorithm the key is published with (or publish the key "
                "with the algorithm it signs with); never let a verifier guess",
                (f"token alg: {self.parsed.alg.value}", f"key algs: {', '.join(algs)}"),
            )
        except BadSignatureError:
            info = j.key(kid) if kid is not None else None
            if info is not None and info.kid_is_thumbprint is False:
                return _Decision(
                    Verdict.SIGNATURE_INVALID,
                    "kid_reused",
                    f"key {kid} is published, but the signature does not verify with it; this "
                    "issuer names kids by hand (the kid is not the key's thumbprint), so the "
                    "same kid was most likely reused for a different key",
                    "give every new key a new kid (keyturn derives it from the key, RFC 7638) and "
                    "keep publishing the old key until its tokens expire",
                    (f"published thumbprint of {kid}: {info.thumbprint}",),
                )
            return _Decision(
                Verdict.SIGNATURE_INVALID,
                "signed_by_other_key",
                f"key {kid} is published and its kid is its own thumbprint, yet the signature "
                "does not verify: the token was signed by another key that claims this kid "
                "(a signer that sets kid from configuration, not from its key) or was altered",
                "check which private key the signer loads against the published kid; reject "
                "the token (never retry a bad signature)",
            )
        return None

    def _kid_missing(self) -> _Decision:
        j = self.jwks
        assert j is not None
        kid = self.info.kid
        expired = self._expired_decision(
            (f"kid {kid} is not published either: normal once its tokens have expired",)
        )
        if expired is not None:
            return expired
        if kid is None:
            return _Decision(
                Verdict.KID_NOT_PUBLISHED,
                "no_kid",
                "the token has no kid and the JWKS does not single out one key for its alg",
                "make the issuer put kid in the header (every rotation needs it)",
                (f"published kids: {', '.join(j.kids) or '(none)'}",),
            )
        published = ", ".join(j.kids) or "(none)"
        evidence = [f"token kid: {kid}", f"published kids: {published}"]
        f = j.fetch
        if f.headers.get("etag"):
            evidence.append(f"ETag: {f.headers['etag']}")
        if f.age is not None:
            evidence.append(f"Age: {f.age}s")
        revoked = self._revoked_decision(kid, evidence)
        if revoked is not None:
            return revoked
        self._refetch_no_cache()
        r = self.refetch
        assert r is not None
        if r.keyset is not None and kid in r.kids:
            evidence.append(
                f"a no-cache request returned ETag {r.fetch.headers.get('etag', '-')} "
                f"with kid {kid}"
            )
            return _Decision(
                Verdict.KID_NOT_PUBLISHED,
                "stale_cache",
                f"a cache in front of the JWKS serves an old copy without kid {kid}; the origin "
                "publishes it (confirmed by a request with Cache-Control: no-cache)",
                "purge the CDN/proxy cache for the JWKS URL, make it honour the origin's "
                "Cache-Control, and check the issuer pre-publishes keys for longer than the "
                "cache's lifetime",
                tuple(evidence),
            )
        iat = self.info.time("iat")
        origin_at = f.date - (f.age or 0) if f.date is not None else None
        stale_signs: list[str] = []
        lifetime = j.cache_control.lifetime
        if f.age is not None and lifetime is not None and f.age > lifetime:
            stale_signs.append(f"Age {f.age}s exceeds max-age {lifetime}s")
        if (
            f.served_by_cache
            and iat is not None
            and origin_at is not None
            and iat.value > origin_at
        ):
            stale_signs.append(
                f"this copy left the origin {fmt_duration(iat.value - origin_at)} before the "
                "token was issued (Date - Age < iat)"
            )
        if stale_signs:
            return _Decision(
                Verdict.KID_NOT_PUBLISHED,
                "stale_cache",
                f"kid {kid} is missing from a copy served by a cache, and the copy is older than "
                "it should be; the origin could not be reached past the cache to confirm",
                "purge the CDN/proxy cache for the JWKS URL and make it honour the origin's "
                "Cache-Control; compare with the issuer's JWKS fetched directly",
                tuple(evidence + stale_signs),
            )
        if j.all_kids_are_thumbprints and not _looks_like_thumbprint(kid):
            return _Decision(
                Verdict.KID_NOT_PUBLISHED,
                "wrong_environment",
                f"kid {kid!r} is not even of the kind this issuer uses (its kids are RFC 7638 "
                "thumbprints): the token was most likely signed by another issuer or environment",
                "check which issuer signed the token (its iss) and that the service is configured "
                "for that issuer's JWKS",
                tuple(evidence),
            )
        if self.discovery is not None and self.discovery.is_keyturn and self.revoked is not None:
            return _Decision(
                Verdict.KID_NOT_PUBLISHED,
                "wrong_environment",
                f"kid {kid} is neither published nor revoked by this keyturn issuer, which never "
                "signs with an unpublished key and unpublishes a live key only by revoking it: "
                "another keyturn instance (another environment, or a replica on another "
                "database) signed this token under the same issuer URL",
                "give each environment its own issuer URL (KEYTURN_PUBLIC_URL), and make every "
                "replica of one issuer share one database",
                tuple(evidence),
            )
        return _Decision(
            Verdict.KID_NOT_PUBLISHED,
            "rotation_without_overlap",
            f"kid {kid} is not in the issuer's JWKS (origin checked with no-cache) although the "
            "token is still live: the issuer either signed with a key before publishing it, or "
            "removed or revoked the key while its tokens were live",
            "publish a key for at least the JWKS cache lifetime + clock skew before it signs, "
            "and keep it published until every token it signed has expired (2 x token TTL); "
            "if the key was revoked on purpose, clients must get new tokens",
            tuple(evidence),
        )

    def _claims(self) -> _Decision | None:
        assert self.parsed is not None
        claims = self.parsed.payload()
        try:
            validate_claims(claims, now=self.now, leeway=self.leeway, audience=self.audience)
        except ExpiredTokenError:
            d = self._expired_decision()
            assert d is not None
            return d
        except NotYetValidError as exc:
            return self._not_yet_valid(exc)
        except AudienceMismatchError:
            return self._audience(claims)
        except MissingClaimError as exc:
            if self.audience is not None and "aud" not in claims and "'aud'" in exc.detail:
                return self._audience(claims)
            return _Decision(
                Verdict.CLAIMS_INVALID,
                exc.code,
                f"the token lacks a required claim: {exc.detail}",
                "make the issuer include exp (every verifier requires it)",
            )
        except ClaimError as exc:
            return _Decision(
                Verdict.CLAIMS_INVALID,
                exc.code,
                f"a claim is malformed: {exc.detail}",
                "fix the issuer's claim types (exp/nbf/iat are numbers, aud a string or list)",
            )
        return None

    def _audience(self, claims: dict[str, Any]) -> _Decision:
        return _Decision(
            Verdict.AUDIENCE_MISMATCH,
            "audience_mismatch",
            f"the token is for audience {claims.get('aud')!r}, not {self.audience!r}",
            "request the token for this service's audience (the client's audience/resource "
            "parameter), or configure the service with the audience it is actually called with",
            (f"token aud: {claims.get('aud')!r}", f"expected: {self.audience!r}"),
        )

    def _not_yet_valid(self, exc: NotYetValidError) -> _Decision:
        nbf = self.info.time("nbf") or self.info.time("iat")
        ahead = nbf.offset if nbf is not None else 0.0
        offset = self.jwks.clock_offset if self.jwks else None
        evidence = [f"{nbf.name if nbf else 'nbf'} {relative(ahead)}", exc.detail]
        if offset is not None:
            evidence.append(f"JWKS server clock offset {offset:+.0f}s")
            server_now = self.now + offset
            if nbf is not None and server_now + self.leeway >= nbf.value:
                return _Decision(
                    Verdict.NOT_YET_VALID,
                    "local_clock_behind",
                    f"the token is valid from {relative(ahead)} by this machine's clock, which is "
                    f"{fmt_duration(offset)} behind the issuer's",
                    "fix NTP on the verifying host (timedatectl / chronyc tracking)",
                    tuple(evidence),
                )
        return _Decision(
            Verdict.NOT_YET_VALID,
            "issuer_clock_ahead",
            f"the token's validity starts {relative(ahead)}: the signer's clock is ahead "
            "(the JWKS server's Date agrees with this machine)",
            "fix NTP on the signing host; verifier leeway (clock skew) covers small offsets only",
            tuple(evidence),
        )

    def _caching_verdict(self) -> _Decision:
        c = self.caching
        if c is not None and c.safe is False:
            return _Decision(
                Verdict.CACHING_UNSAFE,
                "caching_unsafe",
                "the token verifies, but the JWKS caching headers are unsafe for rotation: "
                + "; ".join(c.problems),
                "serve Cache-Control: public, max-age=N with N + clock skew shorter than the time "
                "a key is published before it signs (keyturn enforces this: R >= C + S), and "
                "make CDNs honour it",
                c.problems,
            )
        kid = self.info.kid
        return _Decision(
            Verdict.OK,
            "verified",
            f"the token verifies: key {kid} is published, signature, time claims"
            + (" and audience" if self.audience else "")
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
