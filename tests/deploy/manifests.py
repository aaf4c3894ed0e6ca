"""The rules keyturn's Kubernetes manifests must keep, as a pure function over loaded YAML.

``problems(docs)`` returns one line per broken rule; the tests assert it is empty for the
shipped manifests and that each rule fires on a copy with that protection removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# Not Kubernetes core kinds: no schema ships for them (checked by hand in the tests).
NON_CORE = {"Kustomization", "ServiceMonitor"}

Doc = dict[str, Any]


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def load_all() -> dict[str, list[Doc]]:
    return {p.name: load(p) for p in sorted(K8S.glob("*.yaml"))}


def pod_specs(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """(where, pod spec) for every pod template in a workload."""
    name = f"{doc['kind']}/{_get(doc, 'metadata', 'name')}"
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield name, doc["spec"]["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def workload_problems(doc: Doc) -> list[str]:
    out: list[str] = []
    for where, spec in pod_specs(doc):
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            out.append(f"{where}: pod securityContext.runAsNonRoot must be true")
        if _get(psc, "seccompProfile", "type") != "RuntimeDefault":
            out.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            out.append(f"{where}: automountServiceAccountToken must be false")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            at = f"{where} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{at}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{at}: allowPrivilegeEscalation must be false")
            if _get(sc, "capabilities", "drop") != ["ALL"]:
                out.append(f"{at}: capabilities.drop must be [ALL]")
            if sc.get("privileged"):
                out.append(f"{at}: must not be privileged")
            if sc.get("runAsNonRoot") is False or (sc.get("runAsUser") == 0):
                out.append(f"{at}: must not run as root")
            for kind in ("requests", "limits"):
                res = _get(c, "resources", kind) or {}
                if "memory" not in res or "cpu" not in res:
                    out.append(f"{at}: resources.{kind} needs cpu and memory")
            if doc["kind"] == "Deployment":
                ports = {p.get("name") for p in c.get("ports", [])}
                for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    get = _get(c, probe, "httpGet") or {}
                    if get.get("path") != path:
                        out.append(f"{at}: {probe} must GET {path}")
                    elif get.get("port") not in ports and not isinstance(get.get("port"), int):
                        out.append(f"{at}: {probe} port {get.get('port')} is not a container port")
    return out


def problems(files: dict[str, list[Doc]]) -> list[str]:
    """Every broken rule across the manifests (empty: all hold)."""
    docs = [d for ds in files.values() for d in ds]
    by_kind: dict[str, list[Doc]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    out: list[str] = []
    for d in docs:
        out += workload_problems(d)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return [*out, f"expected one Deployment, found {len(deployments)}"]
    dep = deployments[0]
    if dep["spec"].get("replicas") != 3:
        out.append("Deployment: replicas must be 3")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())

    if not selects(dep["spec"]["selector"]["matchLabels"], pod_labels):
        out.append("Deployment: selector does not match its pod labels")
    for svc in by_kind.get("Service", []):
        if not selects(svc["spec"].get("selector"), pod_labels):
            out.append(f"Service/{svc['metadata']['name']}: selector matches no keyturn pod")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not any(selects(p["spec"]["selector"].get("matchLabels"), pod_labels) for p in pdbs):
        out.append("PodDisruptionBudget: none covers the Deployment's pods")
    # Kustomize adds commonLabels/labels pairs to the pods; the NetworkPolicy may select on them.
    kust = (by_kind.get("Kustomization") or [{}])[0]
    added = {k: v for entry in kust.get("labels", []) for k, v in entry.get("pairs", {}).items()}
    nps = by_kind.get("NetworkPolicy", [])
    if not any(
        selects(n["spec"]["podSelector"].get("matchLabels"), {**pod_labels, **added}) for n in nps
    ):
        out.append("NetworkPolicy: none selects the Deployment's pods")
    cronjobs = by_kind.get("CronJob", [])
    if not any(
        "rotate-due"
        in c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("command", [])
        for c in cronjobs
    ):
        out.append("CronJob: none runs `keyturn rotate-due`")
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    for d in docs:
        for where, spec in pod_specs(d):
            for c in spec.get("containers", []):
                for e in c.get("env", []):
                    ref = _get(e, "valueFrom", "secretKeyRef")
                    if ref and ref["key"] not in (
                        secrets.get(ref["name"], {}).get("stringData") or {}
                    ):
                        out.append(f"{where}: env {e['name']} refers to a missing Secret key")
    return out
