"""keyturn's HTTP service: public JWKS, discovery and revocation feed; the management API.

Imports are lazy: ``keyturn.server.serve`` is loaded by every ``keyturn`` command (through
``keyturn.cli.serve``), which must not pay for importing FastAPI. Nothing here imports the
command line; it hands the server a typed ``ServeOptions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyturn.server.app import KeyturnApp, Metrics, create_app
    from keyturn.server.watch import ListenWatcher, PollingWatcher, Watcher

__all__ = ["KeyturnApp", "ListenWatcher", "Metrics", "PollingWatcher", "Watcher", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("KeyturnApp", "Metrics", "create_app"):
        from keyturn.server import app

        return getattr(app, name)
    if name in ("ListenWatcher", "PollingWatcher", "Watcher"):
        from keyturn.server import watch

        return getattr(watch, name)
    raise AttributeError(name)
