"""create_app keeps what the caller wired: its ``on_change`` still runs after the cache's."""

from __future__ import annotations

from keyturn.config import Settings
from keyturn.server.app import create_app
from keyturn.service import KeyService


def test_create_app_chains_the_callers_on_change(
    ready_service: KeyService, settings: Settings
) -> None:
    seen: list[str] = []
    ready_service.on_change = seen.append
    app = create_app(settings, ready_service, watchers=[])
    assert ready_service.on_change is not seen.append  # the cache's hook is in front
    ready_service.rotate("default", actor="test", reason="test")
    assert seen == ["default"]
    assert app.service is ready_service
