"""The console's Jinja2 environment: package templates, autoescape on everything (SVG too)."""

from __future__ import annotations

from functools import cache

import jinja2
from starlette.templating import Jinja2Templates

from keyturn.server.admin.display import FILTERS, GLOBALS


@cache
def environment() -> jinja2.Environment:
    """Built on first use, not at import. ``autoescape=True`` for every template: Starlette's
    default (``select_autoescape``) would leave ``.svg`` templates unescaped, and the timeline
    carries kids and reasons. ``StrictUndefined``: a misspelt variable is an error, not ''."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("keyturn.server.admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    return env


def templates() -> Jinja2Templates:
    return Jinja2Templates(env=environment())
