"""Issue #14: JSON nested past the cap is a clean invalid-input / malformed-token answer on the
command line and the API, never a traceback or a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keyturn.cli import main
from keyturn.tokens.claims import json_too_deep


def nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return {"sub": "u1", "deep": value}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYTURN_HOME", str(tmp_path / "home"))
    for var in ("KEYTURN_DATABASE_URL", "KEYTURN_MASTER_KEY", "KEYTURN_MASTER_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def test_json_too_deep_counts_levels() -> None:
    assert not json_too_deep({"a": {"b": [1]}}, limit=3)
    assert json_too_deep({"a": {"b": [[1]]}}, limit=3)
    assert not json_too_deep("x", limit=0)
    assert json_too_deep(nested(5000))  # iterative: no RecursionError


def test_cli_sign_with_claims_nested_254_deep_is_invalid_input(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    capsys.readouterr()
    code = main(["token", "sign", "--claims", json.dumps(nested(254))])
    _, err = capsys.readouterr()
    assert code == 6
    assert "claims nested deeper than 32 levels" in err
    assert main(["token", "sign", "--claims", json.dumps(nested(30))]) == 0


def test_cli_verify_of_a_validly_signed_deep_token_is_a_token_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from keyturn.bootstrap import open_service
    from keyturn.config import Settings

    assert main(["init"]) == 0
    capsys.readouterr()
    svc = open_service(Settings.from_env())
    # The service signs what it is given (the API and the CLI check the depth before): a token
    # that a verifier may meet from any signer holding the key.
    token, _ = svc.sign("default", nested(253))
    svc.close()
    code = main(["token", "verify", token])
    out, err = capsys.readouterr()
    assert code == 7
    assert "token_malformed" in err and "nested deeper than 32 levels" in err
    assert "Traceback" not in err
