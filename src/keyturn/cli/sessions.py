"""``keyturn oauth-client`` and ``keyturn session``: OAuth clients, sessions, their policy.

Parsing into :class:`~keyturn.sessions.service.SessionService` calls, nothing more. Kept light
at import time: every ``keyturn`` command imports this module.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import orjson

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.output import Out, actor, read_arg, table, ts
from keyturn.cli.token import _parse_claims
from keyturn.config import Settings
from keyturn.durations import fmt_duration, parse_duration

if TYPE_CHECKING:
    from keyturn.sessions.model import OAuthClient, Session
    from keyturn.sessions.service import SessionService


def register(sub: Subparsers, parents: Parents) -> None:
    common, tenant_opt = parents.common, parents.tenant
    cp = sub.add_parser(
        "oauth-client", parents=[common], help="OAuth clients of the token endpoint"
    )
    csub = cp.add_subparsers(dest="client_cmd", required=True, metavar="ACTION")
    cc = csub.add_parser(
        "create", parents=[common, tenant_opt], help="create a client (the secret is shown once)"
    )
    cc.add_argument(
        "--auth-method",
        choices=["client_secret_basic", "client_secret_post", "none"],
        default="client_secret_basic",
        help="how it authenticates at the token endpoint (none: a public app, no secret)",
    )
    cc.add_argument(
        "--grant",
        action="append",
        choices=["client_credentials", "refresh_token"],
        help="a grant type it may use (repeat; default: both, or refresh_token for none)",
    )
    cc.add_argument("--scope", help="space-separated scopes it may ask for")
    cc.add_argument("--audience", help="the aud claim of its access tokens")
    cc.add_argument("--description", help="what the client is")
    cl = csub.add_parser("list", parents=[common, tenant_opt], help="list clients")
    cl.add_argument("--all", action="store_true", help="include revoked clients")
    for name, text in (
        ("show", "show one client"),
        ("rotate-secret", "new secret; the old one stops working at once"),
        ("revoke", "revoke the client and every session opened through it"),
    ):
        p = csub.add_parser(name, parents=[common, tenant_opt], help=text)
        p.add_argument("client_id", metavar="CLIENT_ID", help="the OAuth client id")
    cp.set_defaults(fn=cmd_oauth_client)

    sp = sub.add_parser(
        "session", parents=[common], help="sessions: open, list, revoke; the session policy"
    )
    ssub = sp.add_subparsers(dest="session_cmd", required=True, metavar="ACTION")
    so = ssub.add_parser(
        "open",
        parents=[common, tenant_opt],
        help="open a session for a subject (prints an access and a refresh token)",
    )
    so.add_argument(
        "--client", dest="client_id", required=True, metavar="CLIENT_ID", help="the client"
    )
    so.add_argument("--subject", required=True, help="the user the session is for (sub)")
    so.add_argument("--claims", default="{}", help="JSON object, @file, or - for stdin")
    so.add_argument("--scope", help="space-separated scopes granted")
    sl = ssub.add_parser("list", parents=[common, tenant_opt], help="list sessions, newest first")
    sl.add_argument("--subject", help="only this subject's sessions")
    sl.add_argument(
        "--client", dest="client_id", metavar="CLIENT_ID", help="only this client's sessions"
    )
    sl.add_argument("--all", action="store_true", help="include revoked and expired sessions")
    sl.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ss = ssub.add_parser("show", parents=[common, tenant_opt], help="show one session")
    ss.add_argument("session_id", metavar="SESSION_ID", help="the session id")
    sr = ssub.add_parser("revoke", parents=[common, tenant_opt], help="revoke one session")
    sr.add_argument("session_id", metavar="SESSION_ID", help="the session id")
    sr.add_argument("--reason", help="why, for the audit log")
    su = ssub.add_parser(
        "revoke-subject",
        parents=[common, tenant_opt],
        help="log out everywhere: revoke every session of a subject",
    )
    su.add_argument("subject", help="the subject (sub) whose sessions end")
    su.add_argument("--reason", help="why, for the audit log")
    spol = ssub.add_parser(
        "policy",
        parents=[common, tenant_opt],
        help="show the session policy, or change it with the options",
    )
    spol.add_argument("--access-ttl", metavar="DUR", help="access token lifetime (<= T)")
    spol.add_argument("--idle-ttl", metavar="DUR", help="refresh token idle lifetime")
    spol.add_argument("--absolute-ttl", metavar="DUR", help="session absolute lifetime")
    spol.add_argument(
        "--reuse-grace", metavar="DUR", help="retry grace for a used refresh token (0-60s)"
    )
    sg = ssub.add_parser(
        "purge", parents=[common], help="delete sessions that ended long enough ago"
    )
    sg.add_argument("--keep", default="7d", metavar="DUR", help="keep ended ones this long")
    sp.set_defaults(fn=cmd_session)


def _service(settings: Settings) -> SessionService:
    from keyturn.bootstrap import open_service
    from keyturn.sessions.service import SessionService

    return SessionService(open_service(settings))


def _client_text(c: OAuthClient) -> str:
    return "\n".join(
        [
            f"client        {c.client_id}",
            f"tenant        {c.tenant}",
            f"auth method   {c.auth_method.value}",
            f"grant types   {' '.join(g.value for g in c.grant_types)}",
            f"scope         {' '.join(c.scope) or '-'}",
            f"audience      {c.audience or '-'}",
            f"description   {c.description or '-'}",
            f"created       {ts(c.created_at)}",
            f"secret set    {ts(c.secret_rotated_at or c.created_at)}",
            f"revoked       {ts(c.revoked_at)}",
        ]
    )


def cmd_oauth_client(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    svc = _service(settings)
    if args.client_cmd == "create":
        grants = args.grant or (
            ["refresh_token"]
            if args.auth_method == "none"
            else ["client_credentials", "refresh_token"]
        )
        client, secret = svc.create_client(
            args.tenant,
            actor=actor(args),
            auth_method=args.auth_method,
            grant_types=grants,
            scope=args.scope,
            audience=args.audience,
            description=args.description,
        )
        if not out.json and secret is not None:
            sys.stderr.write("the client secret below is shown once: store it now\n")
        text = _client_text(client) + (f"\nsecret        {secret}" if secret else "")
        out.data({**client.to_dict(), "client_secret": secret}, text)
    elif args.client_cmd == "list":
        clients = svc.clients(args.tenant, include_revoked=args.all)
        out.data(
            [c.to_dict() for c in clients],
            lambda: table(
                ["CLIENT", "AUTH", "GRANTS", "AUDIENCE", "CREATED", "REVOKED", "DESCRIPTION"],
                [
                    [
                        c.client_id,
                        c.auth_method.value,
                        ",".join(g.value for g in c.grant_types),
                        c.audience,
                        ts(c.created_at),
                        ts(c.revoked_at),
                        c.description,
                    ]
                    for c in clients
                ],
            ),
        )
    elif args.client_cmd == "show":
        client = svc.client(args.tenant, args.client_id)
        out.data(client.to_dict(), _client_text(client))
    elif args.client_cmd == "rotate-secret":
        client, secret = svc.rotate_secret(args.tenant, args.client_id, actor=actor(args))
        if not out.json:
            sys.stderr.write("the new secret below is shown once; the old one no longer works\n")
        out.data({**client.to_dict(), "client_secret": secret}, secret)
    else:
        client = svc.revoke_client(args.tenant, args.client_id, actor=actor(args))
        out.data(client.to_dict(), f"revoked OAuth client {client.client_id}")
    return 0


def _session_rows(found: list[Session]) -> list[list[Any]]:
    return [
        [
            s.session_id,
            s.subject,
            s.client_id,
            ts(s.created_at),
            ts(s.last_used_at),
            s.generation - 1,
            ts(s.revoked_at),
        ]
        for s in found
    ]


_SESSION_HEADERS = [
    "SESSION",
    "SUBJECT",
    "CLIENT",
    "OPENED",
    "LAST REFRESH",
    "REFRESHES",
    "REVOKED",
]


def cmd_session(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    svc = _service(settings)
    cmd = args.session_cmd
    if cmd == "open":
        claims = _parse_claims(read_arg(args.claims))
        sess, tokens = svc.open_session(
            args.tenant,
            client_id=args.client_id,
            subject=args.subject,
            claims=claims,
            scope=args.scope,
            actor=actor(args),
        )
        body = {**tokens.to_dict(), "session": sess.to_dict()}
        # The tokens are the command's product: stdout only, never logged.
        out.data(body, orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif cmd == "list":
        found = svc.sessions(
            args.tenant,
            subject=args.subject,
            client_id=args.client_id,
            include_ended=args.all,
            limit=args.limit,
        )
        out.data(
            [s.to_dict() for s in found], lambda: table(_SESSION_HEADERS, _session_rows(found))
        )
    elif cmd == "show":
        sess = svc.session(args.tenant, args.session_id)
        out.data(sess.to_dict(), lambda: table(_SESSION_HEADERS, _session_rows([sess])))
    elif cmd == "revoke":
        sess = svc.revoke_session(
            args.tenant, args.session_id, actor=actor(args), reason=args.reason
        )
        out.data(sess.to_dict(), f"revoked session {sess.session_id}")
    elif cmd == "revoke-subject":
        ids = svc.revoke_subject(args.tenant, args.subject, actor=actor(args), reason=args.reason)
        out.data(
            {"subject": args.subject, "revoked": ids},
            f"revoked {len(ids)} session(s) of {args.subject}",
        )
    elif cmd == "policy":
        changes = {
            name: parse_duration(value)
            for name, value in (
                ("access_ttl", args.access_ttl),
                ("idle_ttl", args.idle_ttl),
                ("absolute_ttl", args.absolute_ttl),
                ("reuse_grace", args.reuse_grace),
            )
            if value is not None
        }
        policy = (
            svc.set_policy(args.tenant, actor=actor(args), **changes)
            if changes
            else svc.policy(args.tenant)
        )
        out.data(
            policy.to_dict(),
            "\n".join(f"{k:<13} {fmt_duration(v)}" for k, v in policy.to_dict().items()),
        )
    else:
        count = svc.purge(actor=actor(args), keep=parse_duration(args.keep))
        out.data({"purged": count}, f"purged {count} ended session(s)")
    return 0
