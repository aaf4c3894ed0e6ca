"""The ``keyturn`` command: one module per command group, registered explicitly below.

Each group module (``tenant``, ``key``, ``token``, ``jwks``, ...) has a ``register(sub, parents)``
that adds its parser and sets ``fn`` to a ``cmd_*(args, settings, out) -> exit code``; shared
output, timestamps, the audit actor and argument reading live in ``keyturn.cli.output``. The
command line only parses, calls the service (or the server, or diagnose) and prints: nothing
else in keyturn imports it. A new command group is a new module here plus one line in
``GROUPS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from keyturn import errors as E
from keyturn.cli import (
    apikey,
    audit,
    backup,
    diagnose,
    drill,
    init,
    jwks,
    key,
    master_key,
    plan,
    rotate_due,
    serve,
    sessions,
    tenant,
    token,
)
from keyturn.cli._parsers import Parents, Subparsers
from keyturn.cli.exits import (
    EXIT_CONFIG,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INVALID_INPUT,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_STORE_UNAVAILABLE,
    EXIT_TOKEN_INVALID,
    EXIT_UNSAFE_POLICY,
    EXIT_USAGE,
    exit_code_for,
)
from keyturn.cli.output import Out
from keyturn.config import Settings

# The command groups, in the order ``keyturn --help`` lists them.
GROUPS: tuple[Callable[[Subparsers, Parents], None], ...] = (
    init.register,
    tenant.register,
    key.register,
    token.register,
    jwks.register,
    plan.register,
    rotate_due.register,
    master_key.register,
    audit.register,
    backup.register,
    serve.register,
    apikey.register,
    sessions.register,
    diagnose.register,
    drill.register,
)


def _global_options(*, defaults: bool) -> argparse.ArgumentParser:
    """``--json`` and ``--actor``, accepted before the command and after it.

    The top-level parser sets the defaults; the copy every subcommand gets leaves an option it
    was not given unset (``SUPPRESS``), so ``keyturn --actor alice key rotate`` keeps ``alice``
    instead of a subparser default overwriting it. Given in both places, the later one wins.
    """
    p = argparse.ArgumentParser(add_help=False)
    unset = argparse.SUPPRESS
    p.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else unset,
        help="machine-readable JSON output (before or after the command)",
    )
    p.add_argument(
        "--actor",
        default=None if defaults else unset,
        help="who is acting, for the audit log (default cli:$USER; before or after the command)",
    )
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keyturn")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(defaults=False)
    tenant_opt = argparse.ArgumentParser(add_help=False)
    tenant_opt.add_argument(
        "--tenant", "-t", default="default", help="tenant name (default: default)"
    )

    p = argparse.ArgumentParser(
        prog="keyturn",
        description="Zero-downtime JWT signing-key rotation.",
        parents=[_global_options(defaults=True)],
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict, 5 unsafe policy, "
        "6 invalid input, 7 token invalid, 8 store unavailable, 9 configuration/master key, "
        "20 drill failed, 21 key backend (token) unavailable.",
    )
    p.add_argument("--version", action="version", version=f"keyturn {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    parents = Parents(common=common, tenant=tenant_opt)
    for register in GROUPS:
        register(sub, parents)
    return p


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


__all__ = [
    "EXIT_CONFIG",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INVALID_INPUT",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORE_UNAVAILABLE",
    "EXIT_TOKEN_INVALID",
    "EXIT_UNSAFE_POLICY",
    "EXIT_USAGE",
    "Out",
    "build_parser",
    "exit_code_for",
    "fail",
    "main",
]
