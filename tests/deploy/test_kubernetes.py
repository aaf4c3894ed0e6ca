"""deploy/kubernetes: valid against the Kubernetes schemas (offline), linted, and hardened.

Each protection the issue asks for (non-root, read-only root filesystem, no privilege
escalation, ALL capabilities dropped, RuntimeDefault seccomp, resources, probes on /readyz and
/healthz) is a rule in ``tests/deploy/manifests.py``; removing any of them fails a test here.
"""

from __future__ import annotations

import copy
import socket
from typing import Any

import pytest

from tests.deploy.manifests import K8S, NON_CORE, load_all, problems
from tests.tools import in_ci

try:
    import kubernetes_validate
    import yamllint.config as yamllint_config
    import yamllint.linter as yamllint_linter
except ImportError as exc:  # pragma: no cover - the dev extra installs both
    if in_ci():
        raise
    pytest.skip(
        f"{exc.name} missing: ./scripts/setup installs the dev extra", allow_module_level=True
    )

# The oldest Kubernetes minor still in wide use that has everything these manifests use
# (CronJob batch/v1, PodDisruptionBudget policy/v1, seccompProfile fields).
K8S_VERSIONS = ["1.27.0", "1.30.0", "1.37.0"]
YAMLLINT = """
extends: default
rules:
  line-length: {max: 120}
  truthy: {allowed-values: ["true", "false"], check-keys: false}
"""


@pytest.fixture(scope="module")
def files() -> dict[str, list[dict[str, Any]]]:
    return load_all()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must need no network: any connection attempt fails the test."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.usefixtures("no_network")
def test_every_manifest_validates_against_the_schemas(
    files: dict[str, list[dict[str, Any]]], version: str
) -> None:
    checked = []
    for name, docs in files.items():
        for doc in docs:
            if doc["kind"] in NON_CORE:
                continue
            # strict: an unknown or misspelt field is an error, not silently ignored.
            kubernetes_validate.validate(doc, version, strict=True)
            checked.append(f"{name}:{doc['kind']}")
    kinds = {c.split(":")[1] for c in checked}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CronJob",
    }


def test_a_broken_manifest_fails_schema_validation(files: dict[str, list[dict[str, Any]]]) -> None:
    dep = copy.deepcopy(files["deployment.yaml"][0])
    dep["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.30.0", strict=True)
    dep = copy.deepcopy(files["deployment.yaml"][0])
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.30.0", strict=True)


def test_manifests_are_lint_clean() -> None:
    conf = yamllint_config.YamlLintConfig(YAMLLINT)
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for p in yamllint_linter.run(path.read_text(), conf, str(path)):
            found.append(f"{path.name}:{p.line}:{p.column} {p.rule} {p.desc}")
    assert found == []


def test_the_shipped_manifests_keep_every_rule(files: dict[str, list[dict[str, Any]]]) -> None:
    assert problems(files) == []


def _deployment_container(f: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    c: dict[str, Any] = f["deployment.yaml"][0]["spec"]["template"]["spec"]["containers"][0]
    return c


def _cronjob_container(f: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    spec = f["cronjob.yaml"][0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c: dict[str, Any] = spec["containers"][0]
    return c


def _pod(f: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    p: dict[str, Any] = f["deployment.yaml"][0]["spec"]["template"]["spec"]
    return p


MUTATIONS = [
    pytest.param(
        lambda f: _deployment_container(f).pop("securityContext"),
        "readOnlyRootFilesystem must be true",
        id="deployment-loses-container-securityContext",
    ),
    pytest.param(
        lambda f: _cronjob_container(f).pop("securityContext"),
        "CronJob/keyturn-rotate-due container rotate-due: readOnlyRootFilesystem",
        id="cronjob-loses-container-securityContext",
    ),
    pytest.param(
        lambda f: _pod(f).pop("securityContext"),
        "pod securityContext.runAsNonRoot must be true",
        id="deployment-loses-pod-securityContext",
    ),
    pytest.param(
        lambda f: _deployment_container(f)["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation must be false",
        id="privilege-escalation",
    ),
    pytest.param(
        lambda f: _deployment_container(f)["securityContext"]["capabilities"].update(drop=[]),
        "capabilities.drop must be [ALL]",
        id="capabilities-kept",
    ),
    pytest.param(
        lambda f: _pod(f)["securityContext"].pop("seccompProfile"),
        "seccompProfile must be RuntimeDefault",
        id="no-seccomp",
    ),
    pytest.param(
        lambda f: _deployment_container(f).pop("readinessProbe"),
        "readinessProbe must GET /readyz",
        id="no-readiness-probe",
    ),
    pytest.param(
        lambda f: _deployment_container(f).pop("livenessProbe"),
        "livenessProbe must GET /healthz",
        id="no-liveness-probe",
    ),
    pytest.param(
        lambda f: _deployment_container(f)["readinessProbe"]["httpGet"].update(path="/healthz"),
        "readinessProbe must GET /readyz",
        id="readiness-on-the-wrong-path",
    ),
    pytest.param(
        lambda f: _deployment_container(f)["resources"].pop("limits"),
        "resources.limits needs cpu and memory",
        id="no-limits",
    ),
    pytest.param(
        lambda f: f["deployment.yaml"][0]["spec"].update(replicas=1),
        "replicas must be 3",
        id="one-replica",
    ),
    pytest.param(
        lambda f: f["poddisruptionbudget.yaml"][0]["spec"]["selector"].update(
            matchLabels={"app.kubernetes.io/name": "other"}
        ),
        "PodDisruptionBudget: none covers",
        id="pdb-selects-nothing",
    ),
    pytest.param(
        lambda f: _deployment_container(f)["env"][2]["valueFrom"]["secretKeyRef"].update(
            key="MASTER"
        ),
        "env KEYTURN_MASTER_KEY refers to a missing Secret key",
        id="secret-key-misspelt",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), MUTATIONS)
def test_removing_a_protection_is_caught(
    files: dict[str, list[dict[str, Any]]], mutate: Any, expected: str
) -> None:
    broken = copy.deepcopy(files)
    mutate(broken)
    found = problems(broken)
    assert any(expected in p for p in found), found


def test_kustomization_lists_every_core_manifest(files: dict[str, list[dict[str, Any]]]) -> None:
    kust = files["kustomization.yaml"][0]
    listed = set(kust["resources"])
    core = {n for n, docs in files.items() if any(d["kind"] not in NON_CORE for d in docs)}
    assert listed == core
    # The ServiceMonitor needs the Prometheus Operator's CRD: kept out, and documented.
    assert "servicemonitor.yaml" not in listed


def test_servicemonitor_scrapes_metrics_with_the_token_secret(
    files: dict[str, list[dict[str, Any]]],
) -> None:
    sm = files["servicemonitor.yaml"][0]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics"
    assert ep["port"] == "http"
    assert ep["authorization"]["credentials"] == {
        "name": "keyturn-metrics",
        "key": "KEYTURN_METRICS_TOKEN",
    }
    metrics_env = [
        e for e in _deployment_container(files)["env"] if e["name"] == "KEYTURN_METRICS_TOKEN"
    ]
    assert metrics_env[0]["valueFrom"]["secretKeyRef"]["name"] == "keyturn-metrics"


def test_every_keyturn_variable_in_the_manifests_is_one_keyturn_reads(
    files: dict[str, list[dict[str, Any]]],
) -> None:
    from keyturn.cli import build_parser
    from keyturn.cli.env_options import option_env_names

    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    serve = sub.choices["serve"]  # type: ignore[index]
    known = set(option_env_names(serve)) | {
        "KEYTURN_HOME",
        "KEYTURN_DATABASE_URL",
        "KEYTURN_PUBLIC_URL",
        "KEYTURN_MASTER_KEY",
        "KEYTURN_MASTER_KEY_FILE",
    }
    used = set(files["configmap.yaml"][0]["data"])
    for name in ("deployment.yaml", "cronjob.yaml"):
        for doc in files[name]:
            from tests.deploy.manifests import pod_specs

            for _, spec in pod_specs(doc):
                for c in spec["containers"]:
                    used |= {e["name"] for e in c.get("env", [])}
    assert used - known == set()
