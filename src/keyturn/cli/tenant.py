"""``keyturn tenant create|list|show|set-policy|set-issuer``.

``create`` names the new tenant (a positional NAME); every command on an existing tenant takes
``--tenant/-t`` (default ``default``) like the rest of the command line. ``show`` and
``set-policy`` still accept the old positional name, with a deprecation warning.
"""

from __future__ import annotations

import argparse
from typing import Any

from keyturn import errors as E
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.key_backend import add_key_backend_opts, key_backend_from_args
from keyturn.cli.output import Out, actor, print_outcome, table
from keyturn.config import Settings
from keyturn.durations import fmt_duration, parse_duration
from keyturn.keys.algorithms import ALLOWED_RSA_BITS, Alg
from keyturn.ring.model import Policy
from keyturn.ring.policy_contract import DURATION_FIELDS, PolicyChange


def register(sub: Subparsers, parents: Parents) -> None:
    common = parents.common
    tp = sub.add_parser("tenant", parents=[common], help="manage tenants (issuers)")
    tsub = tp.add_subparsers(dest="tenant_cmd", required=True, metavar="ACTION")
    c = tsub.add_parser("create", parents=[common], help="create a tenant with its first keys")
    c.add_argument("name", help="the new tenant's name (lower-case letters, digits, -)")
    c.add_argument("--issuer", help="issuer URL (default PUBLIC_URL/t/NAME)")
    add_policy_opts(c)
    add_key_backend_opts(c)
    tsub.add_parser("list", parents=[common], help="list tenants")
    s = tsub.add_parser(
        "show", parents=[common, parents.tenant], help="show a tenant and its policy"
    )
    s.add_argument("name", nargs="?", help="deprecated: use --tenant")
    sp2 = tsub.add_parser(
        "set-policy", parents=[common, parents.tenant], help="change a tenant's policy"
    )
    sp2.add_argument("name", nargs="?", help="deprecated: use --tenant")
    add_policy_opts(sp2)
    si = tsub.add_parser(
        "set-issuer",
        parents=[common, parents.tenant],
        help="change a tenant's issuer (live tokens carry the old one: needs --force)",
    )
    si.add_argument("issuer", help="the new issuer URL, e.g. https://auth.example.com")
    si.add_argument(
        "--force",
        action="store_true",
        help="change it although tokens already issued name the old issuer (audited)",
    )
    si.add_argument("--reason", help="why, for the audit log")
    tp.set_defaults(fn=cmd_tenant)


# The flag of each settable policy field; tests/core/test_policy_contract.py pins this to the
# Policy dataclass, so a new field cannot be forgotten here.
POLICY_FLAGS: dict[str, str] = {
    "alg": "--alg",
    "rotation_period": "--rotation-period",
    "token_ttl": "--token-ttl",
    "jwks_max_age": "--jwks-max-age",
    "clock_skew": "--clock-skew",
    "rsa_bits": "--rsa-bits",
    "auto_rotate": "--auto-rotate",
}


def add_policy_opts(p: argparse.ArgumentParser) -> None:
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
        "--auto-rotate",
        dest="auto_rotate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rotate every --rotation-period (default); --no-auto-rotate: only when an operator "
        "runs `key rotate` (the timing rules still apply; previous keys still retire)",
    )
    p.add_argument(
        "--force", action="store_true", help="accept a policy that breaks a timing rule (audited)"
    )


def policy_change_from_args(args: argparse.Namespace) -> PolicyChange:
    """The policy fields given on the command line; the others stay ``None`` (unchanged)."""
    values: dict[str, Any] = {}
    if getattr(args, "alg", None):
        values["alg"] = Alg(args.alg)
    for name in DURATION_FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = parse_duration(v)
    if getattr(args, "rsa_bits", None):
        values["rsa_bits"] = args.rsa_bits
    if getattr(args, "auto_rotate", None) is not None:
        values["auto_rotate"] = bool(args.auto_rotate)
    return PolicyChange(**values)


def tenant_text(t: Any) -> str:
    p = t.policy
    return "\n".join(
        [
            f"tenant:          {t.name}",
            f"issuer:          {t.issuer}",
            f"algorithm:       {p.alg}"
            + (f" ({p.rsa_bits} bits)" if p.alg.startswith(("RS", "PS")) else ""),
            f"rotation period: {fmt_duration(p.rotation_period)}"
            + ("" if p.auto_rotate else "  (manual: automatic rotation is off)"),
            f"token ttl (T):   {fmt_duration(p.token_ttl)}",
            f"jwks max-age(C): {fmt_duration(p.jwks_max_age)}",
            f"clock skew (S):  {fmt_duration(p.clock_skew)}",
            f"pre-publication: {fmt_duration(p.prepublication)}  retention: {fmt_duration(p.retention)}",
        ]
        + (["policy:          FORCED (breaks a timing rule; see audit)"] if t.policy_forced else [])
        + (
            [f"key backend:     {t.key_backend.kind} {t.key_backend.uri}"]
            if t.key_backend.uri is not None
            else []
        )
    )


def tenant_name(args: argparse.Namespace, out: Out) -> str:
    """``--tenant``; the deprecated positional name of ``show``/``set-policy`` with a warning."""
    positional = getattr(args, "name", None)
    if positional is None:
        return str(args.tenant)
    if args.tenant not in ("default", positional):
        raise E.InvalidInputError(
            f"two tenants given ({positional!r} and --tenant {args.tenant!r}): use --tenant only"
        )
    out.warn(
        f"`keyturn tenant {args.tenant_cmd} NAME` is deprecated: use "
        f"`keyturn tenant {args.tenant_cmd} --tenant {positional}`"
    )
    return str(positional)


def cmd_tenant(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import open_service

    svc = open_service(settings)
    if args.tenant_cmd == "create":
        policy = policy_change_from_args(args).applied_to(Policy())
        issuer = args.issuer or settings.issuer_for(args.name)
        res = svc.create_tenant(
            args.name,
            issuer=issuer,
            policy=policy,
            force=args.force,
            actor=actor(args),
            key_backend=key_backend_from_args(args, settings),
        )
        print_outcome(out, res, f"created tenant {args.name}\n" + tenant_text(res.tenant))
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
        t = svc.tenant(tenant_name(args, out))
        out.data(t.public_view(), tenant_text(t))
    elif args.tenant_cmd == "set-policy":
        change = policy_change_from_args(args)
        if change.empty:
            raise E.InvalidInputError("nothing to change: give at least one policy option")
        res = svc.change_policy(tenant_name(args, out), change, actor=actor(args), force=args.force)
        print_outcome(out, res, "policy updated\n" + tenant_text(res.tenant))
    elif args.tenant_cmd == "set-issuer":
        res = svc.change_issuer(
            args.tenant, args.issuer, actor=actor(args), force=args.force, reason=args.reason
        )
        print_outcome(out, res, f"issuer of {args.tenant} is now {res.tenant.issuer}")
    return EXIT_OK
