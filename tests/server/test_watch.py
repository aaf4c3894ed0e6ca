"""The polling watcher: full passes now and then, incremental polls between them."""

from __future__ import annotations

from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.server import watch
from keyturn.server.watch import PollingWatcher
from keyturn.service import KeyService


def test_incremental_polls_report_changed_tenants(service: KeyService, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("a", "b", "c"):
        service.create_tenant(
            name, issuer=f"https://{name}.example", policy=Policy(alg=Alg.EdDSA), actor="t"
        )
    seen: list[str] = []
    w = PollingWatcher(service.store, interval=1)
    assert w.poll_once(seen.append) == []  # baseline (a full pass)
    calls: list[float | None] = []
    real = service.store.key_versions

    def spy(since: float | None = None) -> dict[str, int]:
        calls.append(since)
        return real(since)

    monkeypatch.setattr(service.store, "key_versions", spy)
    service.rotate("b", actor="t")
    assert w.poll_once(seen.append) == ["b"]
    assert calls and calls[-1] is not None  # incremental: only recently changed tenants
    assert w.poll_once(seen.append) == []
    monkeypatch.setattr(watch, "FULL_POLL_EVERY", 0.0)
    service.create_tenant("d", issuer="https://d.example", policy=Policy(alg=Alg.EdDSA), actor="t")
    assert w.poll_once(seen.append) == ["d"]
    assert calls[-1] is None  # a full pass
    assert seen == ["b", "d"]
