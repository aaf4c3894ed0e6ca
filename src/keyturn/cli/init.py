"""``keyturn init``: the home, master key, database and default tenant."""

from __future__ import annotations

import argparse

from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import EXIT_OK
from keyturn.cli.output import Out, actor
from keyturn.config import Settings


def register(sub: Subparsers, parents: Parents) -> None:
    sp = sub.add_parser(
        "init",
        parents=[parents.common],
        help="create the home, master key, database and default tenant",
    )
    sp.set_defaults(fn=cmd_init)


def cmd_init(args: argparse.Namespace, settings: Settings, out: Out) -> int:
    from keyturn.bootstrap import ensure_default_tenant, open_service

    created_key = not settings.master_key_env and not (
        settings.master_key_file and settings.master_key_file.exists()
    )
    svc = open_service(settings, create=True)
    created = ensure_default_tenant(svc, settings, actor=actor(args))
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
