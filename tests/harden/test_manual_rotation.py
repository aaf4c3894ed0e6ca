"""Issue #14: automatic rotation off per tenant. The scheduler leaves it alone, the plan says
"manual", and a manual rotation keeps the timing rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyturn import errors as E
from keyturn.cli import main
from keyturn.keys.algorithms import Alg
from keyturn.ring.model import Policy
from keyturn.ring.policy_contract import PolicyChange
from keyturn.service import KeyService

DAY = 86400.0


def test_scheduler_does_not_rotate_a_manual_tenant(service: KeyService, clock) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(alg=Alg.ES256, rotation_period=7 * DAY, auto_rotate=False)
    service.create_tenant("manual", issuer="https://m.test", policy=policy, actor="t")
    service.create_tenant(
        "auto",
        issuer="https://a.test",
        policy=Policy(alg=Alg.ES256, rotation_period=7 * DAY),
        actor="t",
    )
    before = service.ring("manual")[1].current
    clock.advance(8 * DAY)
    done = {o.tenant.name for o in service.sweep()}
    assert done == {"auto"}
    assert service.ring("manual")[1].current == before
    assert service.sweep_tenant("manual").change.empty
    # Turned back on, the overdue rotation happens at the next sweep.
    service.change_policy("manual", PolicyChange(auto_rotate=True), actor="t")
    assert {o.tenant.name for o in service.sweep()} == {"manual"}


def test_manual_rotation_keeps_the_timing_rules(service: KeyService) -> None:
    policy = Policy(alg=Alg.ES256, auto_rotate=False)
    service.create_tenant("manual", issuer="https://m.test", policy=policy, actor="t")
    res = service.rotate("manual", actor="t")  # the next key was published just now
    assert any(w.startswith("early rotation") for w in res.warnings)
    with pytest.raises(E.UnsafePolicyError):
        service.change_policy(
            "manual", PolicyChange(rotation_period=60.0, jwks_max_age=600.0), actor="t"
        )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYTURN_HOME", str(tmp_path / "home"))
    for var in ("KEYTURN_DATABASE_URL", "KEYTURN_MASTER_KEY", "KEYTURN_MASTER_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def test_cli_turns_automatic_rotation_off_and_plan_says_manual(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    assert main(["tenant", "set-policy", "--no-auto-rotate"]) == 0
    out = capsys.readouterr().out
    assert "rotation period: 30d  (manual: automatic rotation is off)" in out
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "rotation is manual" in out
    assert main(["plan", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["default"]
    assert [s["event"] for s in steps] == []  # nothing to retire yet, and no rotation
    assert main(["tenant", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"]["auto_rotate"] is False
    assert main(["tenant", "set-policy", "--auto-rotate"]) == 0
    capsys.readouterr()
    assert main(["plan", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["default"]
    assert steps[0]["event"] == "rotate"
