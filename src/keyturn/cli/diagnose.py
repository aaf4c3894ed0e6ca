"""``keyturn diagnose`` and ``keyturn inspect-jwks``: argument parsing and printing, no logic.

The judging is ``keyturn.diagnose`` (``diagnose`` and ``inspect_jwks``); ``keyturn jwks inspect
URL`` (``keyturn.cli.jwks``) reuses ``add_net_opts`` and ``cmd_inspect_jwks``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.output import Out, indented_table, read_arg
from keyturn.config import Settings
from keyturn.diagnose._http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT
from keyturn.diagnose.core import ASSUMED_OVERLAP, DEFAULT_LEEWAY, diagnose
from keyturn.diagnose.jwks import JwksReport, inspect_jwks
from keyturn.diagnose.report import EXIT_CODES, DiagnoseReport, Verdict, iso
from keyturn.durations import fmt_duration, parse_duration
from keyturn.errors import InvalidInputError

MAX_TOKEN_INPUT = 64 * 1024
EXIT_JWKS_UNREACHABLE = EXIT_CODES[Verdict.JWKS_UNREACHABLE]
EXIT_JWKS_INVALID = EXIT_CODES[Verdict.JWKS_INVALID]

_MEANING = {
    Verdict.OK: "the token verifies and the JWKS caching headers are safe",
    Verdict.TOKEN_MALFORMED: "the token cannot be parsed",
    Verdict.JWKS_UNREACHABLE: "discovery or JWKS unreachable (network, HTTP error, redirect, size)",
    Verdict.JWKS_INVALID: "discovery or JWKS is not valid / has no usable key",
    Verdict.KID_NOT_PUBLISHED: "the token's kid is not in the JWKS",
    Verdict.SIGNATURE_INVALID: "kid published but signature invalid (kid reuse, wrong alg)",
    Verdict.EXPIRED: "the token expired",
    Verdict.NOT_YET_VALID: "nbf/iat in the future",
    Verdict.ISSUER_MISMATCH: "iss is not the issuer",
    Verdict.AUDIENCE_MISMATCH: "aud does not include --audience",
    Verdict.CLAIMS_INVALID: "a required claim is missing or malformed",
    Verdict.CACHING_UNSAFE: "the token verifies but JWKS caching is unsafe for rotation",
}


def exit_code_help() -> str:
    lines = ["exit codes (see docs/diagnose.md):"]
    for verdict, code in EXIT_CODES.items():
        lines.append(f"  {code:>2}  {verdict.value:<18} {_MEANING[verdict]}")
    lines.append("  1-9 as for every keyturn command (2: usage, 6: invalid input)")
    return "\n".join(lines)


def register(sub: Subparsers, parents: Parents) -> None:
    """Add ``diagnose`` and ``inspect-jwks`` to the ``keyturn`` parser."""
    d = sub.add_parser(
        "diagnose",
        parents=[parents.common],
        help="why does this token fail? kid, JWKS, caching, clocks, claims: a verdict and a fix",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=exit_code_help(),
    )
    add_net_opts(d)
    d.add_argument("token", help="the token, @file, or - for stdin ('Bearer ' prefix accepted)")
    d.add_argument("--issuer", help="issuer URL: loads its discovery document and checks iss")
    d.add_argument("--jwks", dest="jwks_url", metavar="URL", help="JWKS URL (instead of, or "
                   "overriding, the discovery document's jwks_uri)")  # fmt: skip
    d.add_argument("--audience", "--aud", dest="audience", help="audience the service expects")
    d.add_argument("--leeway", default=f"{int(DEFAULT_LEEWAY)}s", metavar="DUR",
                   help="clock skew allowed on exp/nbf (default 60s)")  # fmt: skip
    d.add_argument("--overlap", metavar="DUR", help="how long the issuer publishes a key before "
                   "signing with it; judged against JWKS max-age (default: the keyturn policy in "
                   f"discovery, else assumed {fmt_duration(ASSUMED_OVERLAP)})")  # fmt: skip
    d.set_defaults(fn=cmd_diagnose)

    j = sub.add_parser(
        "inspect-jwks",
        parents=[parents.common],
        help="describe any JWKS: kids, algorithms, key sizes, thumbprints, caching headers",
        epilog="exit codes: 0 a usable JWKS, 11 unreachable, 12 not a usable JWKS. "
        "Also: keyturn jwks inspect URL.",
    )
    add_net_opts(j)
    j.add_argument("url", help="JWKS URL")
    j.set_defaults(fn=cmd_inspect_jwks)


def add_net_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per request (default 5)"
    )
    p.add_argument(
        "--follow-redirects",
        action="store_true",
        help="follow up to 3 redirects (each is reported); by default a redirect is a failure",
    )
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="response size cap")


def read_token(value: str) -> str:
    """The token from ``value``, ``@file`` or ``-`` (stdin), at most 64 KiB, stripped."""
    data = read_arg(value, limit=MAX_TOKEN_INPUT, what="token input")
    return data.decode("ascii", "replace").strip()


def cmd_diagnose(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    token = read_token(args.token)
    if not args.issuer and not args.jwks_url:
        raise InvalidInputError("give --issuer URL or --jwks URL")
    with httpx.Client() as client:
        report = diagnose(
            token,
            issuer=args.issuer,
            jwks_url=args.jwks_url,
            audience=args.audience,
            now=time.time(),
            client=client,
            timeout=args.timeout,
            leeway=parse_duration(args.leeway),
            overlap=parse_duration(args.overlap) if args.overlap else None,
            max_bytes=args.max_bytes,
            follow_redirects=args.follow_redirects,
        )
    out.data(report.to_dict(), lambda: render_diagnosis(report))
    return report.exit_code


def cmd_inspect_jwks(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    url = getattr(args, "url", None)
    if not url:
        raise InvalidInputError("give the JWKS URL: keyturn jwks inspect URL")
    with httpx.Client() as client:
        report = inspect_jwks(
            url,
            client=client,
            now=time.time(),
            timeout=getattr(args, "timeout", DEFAULT_TIMEOUT),
            max_bytes=getattr(args, "max_bytes", DEFAULT_MAX_BYTES),
            follow_redirects=getattr(args, "follow_redirects", False),
        )
    out.data(report.to_dict(), lambda: render_jwks(report))
    if report.ok:
        return 0
    return EXIT_JWKS_UNREACHABLE if not report.fetch.ok else EXIT_JWKS_INVALID


# --- text rendering ------------------------------------------------------------------------
def render_jwks(r: JwksReport) -> str:
    f = r.fetch
    status = f"HTTP {f.status}" if f.status else "no response"
    head = f"jwks {f.url}  {status}"
    if f.elapsed_ms is not None:
        head += f"  {f.elapsed_ms:.0f} ms"
    lines = [head]
    for code, loc in f.redirects:
        lines.append(f"  redirect {code} -> {loc}")
    if r.error:
        lines.append(f"  problem: {r.error}")
    if r.keys:
        rows: list[list[Any]] = []
        for k in r.keys:
            size = f"{k.crv} " if k.crv else ""
            size += f"{k.size}b" if k.size else ""
            tp = {True: "yes", False: "no", None: "-"}[k.kid_is_thumbprint]
            rows.append(
                [k.kid, k.kty, k.alg, k.use, size.strip() or None, tp,
                 "yes" if k.usable else f"no: {k.skip_reason}"]
            )  # fmt: skip
        lines.append(
            indented_table(["KID", "KTY", "ALG", "USE", "SIZE", "KID=THUMBPRINT", "USABLE"], rows)
        )
    cc = r.cache_control
    offset = r.clock_offset
    lines.append(f"  Cache-Control: {cc.raw or '(none)'}")
    lines.append(
        f"  ETag: {f.headers.get('etag', '-')}   Age: {f.headers.get('age', '-')}   "
        f"Date: {f.headers.get('date', '-')}"
        + (f" (server clock {round(offset):+d}s vs ours)" if offset is not None else "")
    )
    if f.served_by_cache:
        lines.append("  served by a cache (Age or a cache-hit header present)")
    return "\n".join(lines)


def render_diagnosis(r: DiagnoseReport) -> str:
    lines = [
        f"VERDICT  {r.verdict.value} (exit {r.exit_code})  cause: {r.cause}",
        f"  {r.summary}",
        f"  fix: {r.fix}",
    ]
    for e in r.evidence:
        lines.append(f"  - {e}")
    t = r.token
    if t is not None:
        lines.append("")
        lines.append(
            f"token  fingerprint {t.fingerprint} (sha256 prefix), signature {t.signature_bytes} "
            "bytes (not shown)"
        )
        if t.decode_error:
            lines.append(f"  cannot decode: {t.decode_error}")
        lines.append("  header: " + "  ".join(f"{k}={v}" for k, v in t.header.items()))
        for k, v in t.claims.items():
            tc = t.time(k)
            if tc is not None:
                lines.append(f"  {k:<4} {iso(tc.value)} ({tc.to_dict()['relative']})")
            else:
                lines.append(f"  {k:<4} {v}")
        if t.other_claims:
            lines.append("  other claims (values not shown): " + ", ".join(t.other_claims))
    d = r.discovery
    if d is not None:
        lines.append("")
        status = f"HTTP {d.fetch.status}" if d.fetch.status else "no response"
        lines.append(f"discovery {d.fetch.url}  {status}")
        if d.error:
            lines.append(f"  problem: {d.error}")
        if d.issuer:
            lines.append(f"  issuer   {d.issuer}")
        if d.jwks_uri:
            lines.append(f"  jwks_uri {d.jwks_uri}")
        if d.keyturn_policy:
            lines.append(
                "  keyturn policy: "
                + ", ".join(f"{k}={fmt_duration(v)}" for k, v in d.keyturn_policy.items())
            )
    if r.jwks is not None:
        lines.append("")
        lines.append(render_jwks(r.jwks))
    if r.refetch is not None:
        rf = r.refetch.fetch
        lines.append(
            f"  no-cache refetch: HTTP {rf.status or '-'}, ETag {rf.headers.get('etag', '-')}, "
            f"kids {', '.join(r.refetch.kids) or '-'}"
        )
    c = r.caching
    if c is not None:
        state = {True: "safe", False: "UNSAFE", None: "not judged exactly"}[c.safe]
        life = "-" if c.lifetime is None else fmt_duration(c.lifetime)
        over = "-" if c.overlap is None else fmt_duration(c.overlap)
        lines.append(
            f"  caching: {state} (cache lifetime {life}, overlap {over}: {c.overlap_source})"
        )
        for p in c.problems:
            lines.append(f"    problem: {p}")
        for n in c.notes:
            lines.append(f"    note: {n}")
    if r.findings:
        lines.append("")
        lines.append("findings:")
        for fnd in r.findings:
            lines.append(f"  {fnd.severity}: {fnd.message}")
    return "\n".join(lines)
