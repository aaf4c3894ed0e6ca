"""deploy/prometheus/alerts.yml: promtool checks when available, a structural check always."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
PROMTOOL_HINT = (
    "run scripts/install-test-deps (apt-get install prometheus) to check "
    "the alert rules with promtool; the structural checks still ran"
)
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
METRIC = re.compile(r"\b(keyturn_[a-z0-9_]+)\b")

# What the issue asks the rules to cover, by the metric each must use.
REQUIRED_METRICS = {
    "keyturn_verifier_verifications_total",
    "keyturn_verifier_jwks_fetch_errors_total",
    "keyturn_verifier_jwks_fetches_total",
    "keyturn_seconds_until_rotation",
    "keyturn_key_age_seconds",
    "keyturn_rotation_period_seconds",
    "keyturn_next_key_published_seconds",
    "keyturn_jwks_max_age_seconds",
    "keyturn_clock_skew_seconds",
    "keyturn_prepublication_margin_seconds",
    "keyturn_scheduler_runs_total",
    "keyturn_store_errors_total",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("groups"), list) and doc["groups"]
    out: list[dict[str, Any]] = []
    for group in doc["groups"]:
        assert isinstance(group.get("name"), str) and group["name"]
        assert isinstance(group.get("rules"), list) and group["rules"]
        out.extend(group["rules"])
    return out


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    in_string = False
    for ch in expr:
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not in_string


def test_rules_structure() -> None:
    names = set()
    for rule in _rules():
        name = rule.get("alert")
        assert isinstance(name, str) and re.match(r"^Keyturn[A-Za-z]+$", name), rule
        assert name not in names, f"duplicate alert {name}"
        names.add(name)
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
        assert _balanced(rule["expr"]), f"{name}: unbalanced brackets or quotes"
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: 'for' missing or malformed"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), name
        ann = rule.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), name
        assert str(ann.get("runbook_url", "")).startswith("docs/diagnose.md#"), name


def test_rules_cover_the_issue_and_the_contract() -> None:
    used = {m for rule in _rules() for m in METRIC.findall(rule["expr"])}
    assert used >= REQUIRED_METRICS, f"missing: {REQUIRED_METRICS - used}"
    contract = METRICS_DOC.read_text()
    for name in used:
        assert f"`{name}`" in contract, f"{name} is used by alerts.yml but not in docs/metrics.md"


def test_every_alert_has_a_firing_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert firing == {rule["alert"] for rule in _rules()}


def test_runbook_anchors_exist() -> None:
    text = (ROOT / "docs" / "diagnose.md").read_text()
    for rule in _rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert f'<a id="{anchor}"></a>' in text, f"docs/diagnose.md lacks anchor {anchor}"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", PROMTOOL_HINT)


def test_promtool_check_rules(promtool: str) -> None:
    res = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests(promtool: str) -> None:
    res = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
