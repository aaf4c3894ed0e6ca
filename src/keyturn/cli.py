"""The ``keyturn`` command: argument parsing into service calls, tables or ``--json`` out."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from keyturn import errors as E
from keyturn.config import Settings
from keyturn.durations import fmt_duration, parse_duration
from keyturn.keys.algorithms import ALLOWED_RSA_BITS, Alg
from keyturn.ring.model import KeyState, Policy

MAX_STDIN_BYTES = 1024 * 1024

# Exit codes: stable, documented in the README.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNSAFE_POLICY = 5
EXIT_INVALID_INPUT = 6
EXIT_TOKEN_INVALID = 7
EXIT_STORE_UNAVAILABLE = 8
EXIT_CONFIG = 9

_EXIT_BY_ERROR: list[tuple[type[E.KeyturnError], int]] = [
    (E.NotFoundError, EXIT_NOT_FOUND),
    (E.ConflictError, EXIT_CONFLICT),
    (E.UnsafePolicyError, EXIT_UNSAFE_POLICY),
    (E.TokenError, EXIT_TOKEN_INVALID),
    (E.InvalidInputError, EXIT_INVALID_INPUT),
    (E.StoreUnavailableError, EXIT_STORE_UNAVAILABLE),
    (E.ConfigError, EXIT_CONFIG),
]


def exit_code_for(exc: E.KeyturnError) -> int:
    for cls, code in _EXIT_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR


class Out:
    """Prints tables for people or JSON for scripts; warnings always go to stderr."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode

    def data(self, obj: Any, text: Callable[[], str] | str | None = None) -> None:
        if self.json:
            sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif text is not None:
            sys.stdout.write((text() if callable(text) else text).rstrip("\n") + "\n")

    @staticmethod
    def warn(msg: str) -> None:
        sys.stderr.write(f"warning: {msg}\n")


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _read_arg(value: str) -> bytes:
    """``-`` reads stdin, ``@path`` reads a file, anything else is the value itself."""
    if value == "-":
        data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise E.InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
        if size > MAX_STDIN_BYTES:
            raise E.InvalidInputError(f"{path} is larger than {MAX_STDIN_BYTES} bytes")
        data = path.read_bytes()
    else:
        data = value.encode()
    if len(data) > MAX_STDIN_BYTES:
        raise E.InvalidInputError(f"input larger than {MAX_STDIN_BYTES} bytes")
    return data


def _actor(args: argparse.Namespace) -> str:
    if getattr(args, "actor", None):
        return str(args.actor)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def _policy_from_args(args: argparse.Namespace, base: Policy | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "alg", None):
        out["alg"] = Alg(args.alg)
    for name in ("rotation_period", "token_ttl", "jwks_max_age", "clock_skew"):
        v = getattr(args, name, None)
        if v is not None:
            out[name] = parse_duration(v)
    if getattr(args, "rsa_bits", None):
        out["rsa_bits"] = args.rsa_bits
    return out


# --- commands ------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import ensure_default_tenant, open_service

    created_key = not settings.master_key_env and not (
        settings.master_key_file and settings.master_key_file.exists()
    )
    svc = open_service(settings, create=True)
    created = ensure_default_tenant(svc, settings, actor=_actor(args))
    tenant = svc.tenant(settings.default_tenant)
    info = {
        "home": str(settings.home),
        "database": settings.database_url
        if settings.database_url.startswith("sqlite")
        else "(configured)",
        "master_key_file": None if settings.master_key_env else str(settings.master_key_file),
        "master_key_created": created_key,
        "default_tenant_created": created,
        "issuer": tenant.issuer,
    }
    lines = [f"keyturn home: {settings.home}"]
    if created_key:
        lines.append(f"generated master key: {settings.master_key_file} (mode 0600; back it up)")
    lines.append(
        ("created" if created else "found")
        + f" tenant '{tenant.name}' ({tenant.policy.alg}), issuer {tenant.issuer}"
    )
    out.data(info, "\n".join(lines))
    return EXIT_OK


def _tenant_text(t: Any) -> str:
    p = t.policy
    return "\n".join(
        [
            f"tenant:          {t.name}",
            f"issuer:          {t.issuer}",
            f"algorithm:       {p.alg}"
            + (f" ({p.rsa_bits} bits)" if p.alg.startswith(("RS", "PS")) else ""),
            f"rotation period: {fmt_duration(p.rotation_period)}",
            f"token ttl (T):   {fmt_duration(p.token_ttl)}",
            f"jwks max-age(C): {fmt_duration(p.jwks_max_age)}",
            f"clock skew (S):  {fmt_duration(p.clock_skew)}",
            f"pre-publication: {fmt_duration(p.prepublication)}  retention: {fmt_duration(p.retention)}",
        ]
        + (["policy:          FORCED (breaks a timing rule; see audit)"] if t.policy_forced else [])
    )


def _print_outcome(out: Out, res: Any, text: str) -> None:
    for w in res.warnings:
        out.warn(w)
    for v in res.violations:
        out.warn(f"forced past a timing rule: {v}")
    out.data(res.to_dict(), text)


def cmd_tenant(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.tenant_cmd == "create":
        fields = _policy_from_args(args)
        policy = Policy(**fields)
        issuer = args.issuer or settings.issuer_for(args.name)
        res = svc.create_tenant(
            args.name, issuer=issuer, policy=policy, force=args.force, actor=_actor(args)
        )
        _print_outcome(out, res, f"created tenant {args.name}\n" + _tenant_text(res.tenant))
    elif args.tenant_cmd == "list":
        ts = svc.tenants()
        out.data(
            [t.public_view() for t in ts],
            lambda: table(
                ["NAME", "ALG", "ROTATION", "TOKEN TTL", "MAX-AGE", "ISSUER"],
                [
                    [
                        t.name,
                        t.policy.alg,
                        fmt_duration(t.policy.rotation_period),
                        fmt_duration(t.policy.token_ttl),
                        fmt_duration(t.policy.jwks_max_age),
                        t.issuer,
                    ]
                    for t in ts
                ],
            ),
        )
    elif args.tenant_cmd == "show":
        t = svc.tenant(args.name)
        out.data(t.public_view(), _tenant_text(t))
    elif args.tenant_cmd == "set-policy":
        fields = _policy_from_args(args)
        if not fields:
            raise E.InvalidInputError("nothing to change: give at least one policy option")
        res = svc.set_policy(args.name, actor=_actor(args), force=args.force, **fields)
        _print_outcome(out, res, "policy updated\n" + _tenant_text(res.tenant))
    return EXIT_OK


def _key_rows(keys: Sequence[Any]) -> list[list[Any]]:
    return [
        [
            k.kid,
            k.alg,
            k.state,
            k.origin,
            _ts(k.created_at),
            _ts(k.activated_at),
            _ts(k.retire_after),
            _ts(k.revoked_at),
        ]
        for k in keys
    ]


def cmd_key(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    actor = _actor(args)
    name = args.tenant
    if args.key_cmd == "list":
        _, ring = svc.ring(name)
        keys = ring.keys if args.all else [k for k in ring.keys if k.published]
        keys = sorted(keys, key=lambda k: k.created_at, reverse=True)
        out.data(
            [k.public_view() for k in keys],
            lambda: table(
                [
                    "KID",
                    "ALG",
                    "STATE",
                    "ORIGIN",
                    "CREATED",
                    "ACTIVATED",
                    "RETIRE AFTER",
                    "REVOKED",
                ],
                _key_rows(keys),
            ),
        )
    elif args.key_cmd == "show":
        k = svc.find_key(name, args.kid)
        view = k.public_view()
        out.data(
            view,
            "\n".join(f"{key:18} {val}" for key, val in view.items() if key != "public_jwk")
            + "\npublic_jwk         "
            + orjson.dumps(k.public_jwk).decode(),
        )
    elif args.key_cmd == "rotate":
        res = svc.rotate(name, actor=actor, reason=args.reason, if_current=args.if_current)
        ev = res.change.events[-1]
        _print_outcome(
            out,
            res,
            f"rotated {name}: {ev.kid} now signs; {ev.details.get('previous')} is previous "
            f"until {_ts(ev.details.get('retire_after'))}; new next {ev.details.get('next')}",
        )
    elif args.key_cmd == "revoke":
        if args.all:
            if args.kid:
                raise E.InvalidInputError("give a kid or --all, not both")
            res = svc.revoke_all(name, reason=args.reason, actor=actor)
            revoked = [e.kid for e in res.change.events if e.event == "key.revoked"]
            _print_outcome(
                out,
                res,
                f"revoked {len(revoked)} keys of {name}: {', '.join(str(k) for k in revoked)}\n"
                f"new current {res.change.events[-1].kid}",
            )
        else:
            if not args.kid:
                raise E.InvalidInputError("give the kid to revoke, or --all for a leaked key store")
            res = svc.revoke(name, args.kid, reason=args.reason, actor=actor)
            _print_outcome(out, res, f"revoked {args.kid} of {name}")
    elif args.key_cmd == "rotate-and-revoke":
        res = svc.rotate_and_revoke(name, reason=args.reason, actor=actor)
        ev = res.change.events[-1]
        _print_outcome(
            out,
            res,
            f"revoked {ev.kid}; {ev.details.get('promoted')} now signs; new next "
            f"{ev.details.get('next')}",
        )
    elif args.key_cmd == "import":
        data = _read_arg("@" + args.file if args.file != "-" else "-")
        password = _password(args)
        res = svc.import_key(
            name,
            data,
            actor=actor,
            fmt=args.format,
            password=password,
            as_state=KeyState(args.as_state),
        )
        kid = res.change.events[-1].kid
        _print_outcome(out, res, f"imported {kid} into {name} as {args.as_state}")
    return EXIT_OK


def _password(args: argparse.Namespace) -> bytes | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise E.InvalidInputError(f"environment variable {args.password_env} is not set")
        return value.encode()
    if args.password_file:
        try:
            return Path(args.password_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise E.InvalidInputError(f"cannot read {args.password_file}: {exc.strerror}") from None
    return None


def _parse_claims(raw: bytes) -> dict[str, Any]:
    try:
        claims = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise E.InvalidInputError(f"claims are not valid JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise E.InvalidInputError("claims must be a JSON object")
    return claims


def cmd_token(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.token_cmd == "sign":  # noqa: S105 - a subcommand name, not a secret
        claims = _parse_claims(_read_arg(args.claims))
        ttl = parse_duration(args.ttl) if args.ttl else None
        token, full = svc.sign(args.tenant, claims, ttl=ttl)
        # The token is the command's product: printed to stdout only, never logged.
        out.data({"token": token, "claims": full}, token)
    else:
        token = _read_arg(args.token).decode("ascii", "replace").strip()
        claims, kid = svc.verify(args.tenant, token, audience=args.audience)
        out.data(
            {"valid": True, "kid": kid, "claims": claims},
            f"valid: signed by {kid}\n" + orjson.dumps(claims, option=orjson.OPT_INDENT_2).decode(),
        )
    return EXIT_OK


def cmd_jwks(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    doc = svc.jwks(args.tenant)
    # JWKS is JSON either way.
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service
    from keyturn.ring.timeline import plan

    svc = open_service(settings)
    horizon = parse_duration(args.horizon)
    names = [t.name for t in svc.tenants()] if args.all else [args.tenant]
    now = svc.clock.now()
    result: dict[str, Any] = {}
    texts: list[str] = []
    for name in names:
        _, ring = svc.ring(name)
        steps = plan(ring, now, horizon)
        result[name] = [s.to_dict() for s in steps]
        texts.append(
            f"tenant {name} (now {_ts(now)}; signing {ring.current.kid if ring.current else '-'}; "
            f"JWKS {', '.join(k.kid + ':' + k.state for k in ring.published)})"
        )
        texts.append(
            table(
                ["AT", "IN", "EVENT", "KEYS", "SIGNING AFTER", "JWKS AFTER"],
                [
                    [
                        _ts(s.at),
                        fmt_duration(s.at - now),
                        s.event,
                        ",".join(s.kids),
                        s.signing,
                        " ".join(f"{k}:{st}" for k, st in s.jwks),
                    ]
                    for s in steps
                ],
            )
        )
    out.data(result, "\n\n".join(texts))
    return EXIT_OK


def cmd_rotate_due(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    results = svc.sweep(actor="scheduler")
    events = [{"tenant": r.tenant.name, **ev} for r in results for ev in r.to_dict()["events"]]
    out.data(
        {"changed": len(results), "events": events},
        "\n".join(f"{e['tenant']}: {e['event']} {e.get('kid')}" for e in events) or "nothing due",
    )
    return EXIT_OK


def cmd_master_key(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service
    from keyturn.keys.sealing import MasterKey, Sealer, write_master_key_file

    svc = open_service(settings)
    keys = settings.master_keys()
    if args.reseal_only or settings.master_key_env:
        if settings.master_key_env and not args.reseal_only:
            raise E.InvalidInputError(
                "master keys come from KEYTURN_MASTER_KEY: put the new key first in that variable "
                "(keeping the old one after it) and run `keyturn master-key rotate --reseal-only`"
            )
        sealer = Sealer(keys)
    else:
        assert settings.master_key_file is not None
        new = MasterKey.generate()
        # The file is written before the database is re-sealed: a crash in between leaves
        # blobs under the old key, which the file still holds. The reverse order could lose keys.
        write_master_key_file(settings.master_key_file, [new, *keys])
        sealer = Sealer([new, *keys])
    count = svc.reseal_all(sealer, actor=_actor(args))
    out.data(
        {"active_master_key": sealer.active_id, "resealed": count},
        f"active master key {sealer.active_id}; re-sealed {count} private keys. Older master keys "
        "stay configured for replicas that have not reloaded; remove them once all have.",
    )
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.audit_cmd == "verify":
        problems = svc.store.verify_audit_chain()
        out.data(
            {"intact": not problems, "problems": problems},
            "audit chain intact" if not problems else "\n".join(problems),
        )
        return EXIT_OK if not problems else EXIT_ERROR
    recs = svc.store.audit_records(
        tenant=args.tenant, kid=args.kid, event_name=args.event, limit=args.limit
    )
    out.data(
        [r.to_dict() for r in recs],
        lambda: table(
            ["ID", "AT", "ACTOR", "TENANT", "EVENT", "KID", "REASON"],
            [[r.id, _ts(r.at), r.actor, r.tenant, r.event, r.kid, r.reason] for r in recs],
        ),
    )
    return EXIT_OK


# --- parser --------------------------------------------------------------------------------
def _add_policy_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alg", choices=[a.value for a in Alg], help="signing algorithm (default RS256)"
    )
    p.add_argument("--rotation-period", dest="rotation_period", metavar="DUR", help="R, e.g. 30d")
    p.add_argument(
        "--token-ttl", dest="token_ttl", metavar="DUR", help="T, longest token lifetime, e.g. 1h"
    )
    p.add_argument(
        "--jwks-max-age", dest="jwks_max_age", metavar="DUR", help="C, JWKS Cache-Control max-age"
    )
    p.add_argument("--clock-skew", dest="clock_skew", metavar="DUR", help="S, allowed clock skew")
    p.add_argument(
        "--rsa-bits", dest="rsa_bits", type=int, choices=ALLOWED_RSA_BITS, help="RSA key size"
    )
    p.add_argument(
        "--force", action="store_true", help="accept a policy that breaks a timing rule (audited)"
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    common.add_argument("--actor", help="who is acting, for the audit log (default cli:$USER)")
    tenant_opt = argparse.ArgumentParser(add_help=False)
    tenant_opt.add_argument(
        "--tenant", "-t", default="default", help="tenant name (default: default)"
    )

    p = argparse.ArgumentParser(
        prog="keyturn",
        description="Zero-downtime JWT signing-key rotation.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict, 5 unsafe policy, "
        "6 invalid input, 7 token invalid, 8 store unavailable, 9 configuration/master key.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sp = sub.add_parser(
        "init", parents=[common], help="create the home, master key, database and default tenant"
    )
    sp.set_defaults(fn=cmd_init)

    tp = sub.add_parser("tenant", parents=[common], help="manage tenants (issuers)")
    tsub = tp.add_subparsers(dest="tenant_cmd", required=True, metavar="ACTION")
    c = tsub.add_parser("create", parents=[common], help="create a tenant with its first keys")
    c.add_argument("name")
    c.add_argument("--issuer", help="issuer URL (default PUBLIC_URL/t/NAME)")
    _add_policy_opts(c)
    tsub.add_parser("list", parents=[common], help="list tenants")
    s = tsub.add_parser("show", parents=[common], help="show a tenant and its policy")
    s.add_argument("name")
    sp2 = tsub.add_parser("set-policy", parents=[common], help="change a tenant's policy")
    sp2.add_argument("name")
    _add_policy_opts(sp2)
    tp.set_defaults(fn=cmd_tenant)

    kp = sub.add_parser("key", parents=[common], help="list, rotate, revoke and import keys")
    ksub = kp.add_subparsers(dest="key_cmd", required=True, metavar="ACTION")
    kl = ksub.add_parser("list", parents=[common, tenant_opt], help="list published keys")
    kl.add_argument("--all", action="store_true", help="include retired and revoked keys")
    ks = ksub.add_parser(
        "show", parents=[common, tenant_opt], help="show one key (public data only)"
    )
    ks.add_argument("kid")
    kr = ksub.add_parser("rotate", parents=[common, tenant_opt], help="rotate now: next signs")
    kr.add_argument("--reason")
    kr.add_argument(
        "--if-current",
        dest="if_current",
        metavar="KID",
        help="only rotate if KID is still the current key (compare-and-swap)",
    )
    kv = ksub.add_parser(
        "revoke", parents=[common, tenant_opt], help="revoke a key (removed from the JWKS at once)"
    )
    kv.add_argument("kid", nargs="?")
    kv.add_argument(
        "--all", action="store_true", help="leaked key store: revoke every published key"
    )
    kv.add_argument("--reason", required=True)
    krr = ksub.add_parser(
        "rotate-and-revoke",
        parents=[common, tenant_opt],
        help="compromised current key: revoke it, next signs at once",
    )
    krr.add_argument("--reason", required=True)
    ki = ksub.add_parser(
        "import", parents=[common, tenant_opt], help="import a private key (PEM, PKCS#12, JWK)"
    )
    ki.add_argument("file", help="key file, or - for stdin")
    ki.add_argument("--format", choices=["pem", "pkcs12", "jwk"], help="default: detected")
    ki.add_argument(
        "--password-env", metavar="VAR", help="read the passphrase from this environment variable"
    )
    ki.add_argument("--password-file", metavar="FILE", help="read the passphrase from this file")
    ki.add_argument(
        "--as",
        dest="as_state",
        choices=["next", "current", "previous"],
        default="next",
        help="next (default: pre-published, signs at the next rotation), current (signs now), "
        "previous (an old key whose tokens must keep verifying)",
    )
    kp.set_defaults(fn=cmd_key)

    tk = sub.add_parser("token", parents=[common], help="sign and verify tokens")
    tksub = tk.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    ts = tksub.add_parser(
        "sign", parents=[common, tenant_opt], help="sign claims with the current key"
    )
    ts.add_argument("--claims", default="{}", help="JSON object, @file, or - for stdin")
    ts.add_argument("--ttl", metavar="DUR", help="lifetime (default and maximum: the tenant's T)")
    tv = tksub.add_parser(
        "verify", parents=[common, tenant_opt], help="verify a token against the published keys"
    )
    tv.add_argument("token", help="the token, @file, or - for stdin")
    tv.add_argument("--audience", "--aud", dest="audience")
    tk.set_defaults(fn=cmd_token)

    jp = sub.add_parser("jwks", parents=[common, tenant_opt], help="print the tenant's JWKS")
    jp.set_defaults(fn=cmd_jwks)

    pp = sub.add_parser(
        "plan", parents=[common, tenant_opt], help="every upcoming transition and the JWKS at each"
    )
    pp.add_argument("--all", action="store_true", help="every tenant")
    pp.add_argument("--horizon", default="90d", help="how far ahead (default 90d)")
    pp.set_defaults(fn=cmd_plan)

    rd = sub.add_parser(
        "rotate-due", parents=[common], help="one scheduler sweep: rotate and retire what is due"
    )
    rd.set_defaults(fn=cmd_rotate_due)

    mk = sub.add_parser("master-key", parents=[common], help="master key operations")
    mksub = mk.add_subparsers(dest="mk_cmd", required=True, metavar="ACTION")
    mr = mksub.add_parser(
        "rotate", parents=[common], help="new master key; re-seal every private key"
    )
    mr.add_argument(
        "--reseal-only",
        action="store_true",
        help="re-seal under the first configured key without generating one",
    )
    mk.set_defaults(fn=cmd_master_key)

    ap = sub.add_parser("audit", parents=[common], help="the audit trail")
    asub = ap.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    al = asub.add_parser("list", parents=[common], help="list audit records, newest first")
    al.add_argument("--tenant", "-t")
    al.add_argument("--kid")
    al.add_argument("--event")
    al.add_argument("--limit", type=int, default=50)
    asub.add_parser("verify", parents=[common], help="check the tamper-evident hash chain")
    ap.set_defaults(fn=cmd_audit)

    _register_extra(sub, common, tenant_opt)
    return p


def _register_extra(
    sub: Any, common: argparse.ArgumentParser, tenant_opt: argparse.ArgumentParser
) -> None:
    """Commands defined by other modules (server, diagnose), registered if importable."""
    from importlib import import_module

    for modname in ("keyturn.server.cli", "keyturn.diagnose.cli", "keyturn.backup_cli"):
        try:
            mod = import_module(modname)
        except ImportError:
            continue
        mod.register(sub, common, tenant_opt)


def fail(msg: str, code: int) -> NoReturn:
    sys.stderr.write(f"keyturn: error: {msg}\n")
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Out(getattr(args, "json", False))
    try:
        settings = Settings.from_env()
        code: int = args.fn(args, settings, out)
        return code
    except E.KeyturnError as exc:
        # One clear line; the code lets scripts branch without parsing prose.
        sys.stderr.write(f"keyturn: error [{exc.code}]: {exc.detail}\n")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
