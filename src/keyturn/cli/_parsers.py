"""The types a command group's ``register`` receives: the subparsers and the shared parents."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from keyturn.config import Settings

if TYPE_CHECKING:
    from keyturn.cli.output import Out

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Command: TypeAlias = "Callable[[argparse.Namespace, Settings, Out], int]"


@dataclass(frozen=True)
class Parents:
    """Options shared by many commands: ``common`` (``--json``, ``--actor``) and ``tenant``
    (``--tenant/-t``, default ``default``)."""

    common: argparse.ArgumentParser
    tenant: argparse.ArgumentParser
