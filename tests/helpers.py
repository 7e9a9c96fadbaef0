"""What several test modules share: reference data, alerts and definitions, in-process parts, commands.

Test modules import from here (and from conftest, harness and the doubles),
never from each other: tests/test_meta.py checks that.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pamqp.encode
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from kubernetes import client

from dispatcher.alertmanager import Alertmanagers
from dispatcher.catalog import Catalog
from dispatcher.definitions import Definition
from dispatcher.handling import Handler
from dispatcher.jobs import JobCreator
from dispatcher.leading import LeaseTimes
from dispatcher.rendering import JobRules
from dispatcher.results import Result
from dispatcher.silencing import SilenceKeeper
from ingest.app import create_app
from openfero.cli import main
from shared.envelope import Envelope, envelopes_from_webhook
from shared.settings import AlertmanagerSettings, BrokerSettings, IngestSettings, KubeSettings
from tests.conftest import ROOT, async_wait_for, reference_alert_bytes, reference_configmap
from tests.kube_double import KubeDouble

# -- the reference alert and definition (examples/, k8s/examples/) ------------------------------

REFERENCE_ENV = {
    "OPENFERO_ALERTNAME": "KubeQuotaAlmostFull",
    "OPENFERO_CLUSTER": "dev-dmz",
    "OPENFERO_CONTAINER": "kube-state-metrics",
    "OPENFERO_ENDPOINT": "http",
    "OPENFERO_NAMESPACE": "namespace",
    "OPENFERO_POD": "mmop-kube-state-metrics-79fb6b966c-xrkgb",
    "OPENFERO_PROMETHEUS": "monitoring/mmop-kube-prometheus-stack-prometheus",
    "OPENFERO_RESOURCE": "requests.cpu",
    "OPENFERO_RESOURCEQUOTA": "std-quota",
    "OPENFERO_SERVICE": "mmop-kube-state-metrics",
    "OPENFERO_SEVERITY": "info",
    "OPENFERO_STAGE": "dev",
    "OPENFERO_ZONE": "internal",
}


def reference_definition() -> Definition:
    cm = reference_configmap()
    return Definition.parse("default/" + cm["metadata"]["name"], "KubeQuotaAlmostFull", cm["data"]["KubeQuotaAlmostFull"])


def reference_envelope() -> Envelope:
    return envelopes_from_webhook(json.loads(reference_alert_bytes()))[0]


# -- many alerts, one definition, one Job each ------------------------------------------------------


def definition(alertname: str, text: str | None = None) -> dict[str, Any]:
    """A ConfigMap definition for ``alertname`` (firing): ``text``, or a plain Job."""
    job = text or (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fix}\n"
        "spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: fixer}]}}}"
    )
    return {"metadata": {"name": f"openfero-{alertname.lower()}-firing", "labels": {"app": "openfero"}}, "data": {alertname: job}}


def alerts(count: int, alertname: str = "Broken", start: int = 0) -> list[dict[str, Any]]:
    """``count`` firing alerts, told apart by their instance label (i<start> ...)."""
    return [
        {"labels": {"alertname": alertname, "instance": f"i{n}"}, "status": "firing", "startsAt": "2025-01-01T00:00:00Z"}
        for n in range(start, start + count)
    ]


def job_definition(name: str, image: str) -> str:
    """A Job of one container, named ``name``, running ``image``: a definition's text."""
    return (
        f"apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\n"
        f"spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: {image}}}]}}}}}}"
    )


def job_env(job: dict[str, Any]) -> dict[str, str]:
    """The env vars of a Job's one container, by name."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def instances(kube: KubeDouble) -> list[str]:
    """The alert each Job was made for, one entry per Job."""
    found = []
    for job in kube.jobs():
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        found.append(env["OPENFERO_INSTANCE"])
    return sorted(found)


def expected(count: int, start: int = 0) -> list[str]:
    return sorted(f"i{n}" for n in range(start, start + count))


# -- silences -----------------------------------------------------------------------------------


def silenced_configmap(after_success: str = "keep", deadline_s: int | None = 600, silence: str = "true") -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "fix", "image": "fixer:1"}]}}}
    if deadline_s is not None:
        spec["activeDeadlineSeconds"] = deadline_s
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fix-quota"}, "spec": spec}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "openfero-kubequotaalmostfull-firing",
            "labels": {"app": "openfero"},
            "annotations": {"openfero.io/silence": silence, "openfero.io/silence-after-success": after_success},
        },
        "data": {"KubeQuotaAlmostFull": yaml.safe_dump(job)},
    }


def quota_alert(**labels: str) -> Envelope:
    """A firing KubeQuotaAlmostFull with ``labels``."""
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "KubeQuotaAlmostFull", **labels}, "startsAt": "2026-01-01T00:00:00Z"}]})
    return envelope


def counter(metric: Any) -> float:
    value: float = metric._value.get()
    return value


class SilencingHandler:
    """One dispatcher's handler, with silences, in this process."""

    def __init__(self, kube: KubeDouble, api: client.ApiClient, urls: str, configmap: dict[str, Any], margin_s: float = 60, **settings: Any):
        catalog = Catalog()
        catalog.replace_configmaps([kube.apply("configmaps", "default", configmap)])
        self.creator = JobCreator(api, KubeSettings(job_namespace="default", request_timeout_s=2), concurrency=2)
        self.alertmanagers = Alertmanagers(AlertmanagerSettings(urls=urls, timeout_s=2, **settings))
        self.keeper = SilenceKeeper(self.alertmanagers, self.creator.annotations, "default", 900, margin_s)
        self.handler = Handler(catalog, self.creator, JobRules(60, "default", track_outcomes=True), None, self.keeper)

    async def handle(self, envelope: Envelope) -> Result:
        return await self.handler.handle(envelope.to_json())

    async def close(self) -> None:
        await self.alertmanagers.close()
        self.creator.close()


# Short Lease timings for elections in process: a leader change within about a second.
SHORT_LEASE_TIMES = LeaseTimes(duration_s=1, renew_deadline_s=0.6, retry_s=0.1)

# -- the shipped manifests ------------------------------------------------------------------------


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "k8s" / "base" / "operarius-crd.yaml").read_text())
    return loaded


def crd_schema() -> dict[str, Any]:
    crd_ = crd()
    [version] = crd_["spec"]["versions"]
    assert (crd_["spec"]["group"], version["name"], crd_["spec"]["names"]["kind"]) == ("openfero.io", "v1alpha1", "Operarius")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


# What the dispatcher does, by namespace: tests/test_outcomes_end_to_end.py checks that a run of
# two dispatchers asks for exactly these, so that a grant nobody uses fails as surely as a 403.
DISPATCHER_NAMESPACE_GRANTS = {
    ("", "configmaps", "get", "*"),  # an Event's object (a ConfigMap definition)
    ("", "configmaps", "list", "*"),
    ("", "configmaps", "watch", "*"),
    ("openfero.io", "operariuses", "get", "*"),  # read before each status write
    ("openfero.io", "operariuses", "list", "*"),
    ("openfero.io", "operariuses", "watch", "*"),
    ("openfero.io", "operariuses/status", "update", "*"),  # resourceVersion-checked replaces
    ("", "events", "create", "*"),  # RemediationSucceeded / RemediationFailed / RemediationDeleted
    ("coordination.k8s.io", "leases", "create", "*"),  # the outcome and wait leaders' Leases, the first time
    ("coordination.k8s.io", "leases", "get", "openfero-outcomes"),
    ("coordination.k8s.io", "leases", "update", "openfero-outcomes"),
    ("coordination.k8s.io", "leases", "get", "openfero-storm"),  # storm control's wait leader
    ("coordination.k8s.io", "leases", "update", "openfero-storm"),
    ("coordination.k8s.io", "leases", "get", "openfero-breakers"),  # the breakers' state
    ("coordination.k8s.io", "leases", "update", "openfero-breakers"),
}
# Used only once a breaker counts a failure: tests/test_storm.py checks them
BREAKER_GRANTS = {
    ("coordination.k8s.io", "leases", "update", "openfero-breakers"),
}
JOB_NAMESPACE_GRANTS = {
    ("batch", "jobs", "create", "*"),
    ("batch", "jobs", "get", "*"),
    ("batch", "jobs", "list", "*"),  # the outcome leader follows the Jobs; every dispatcher's storm control counts them
    ("batch", "jobs", "watch", "*"),
    ("batch", "jobs", "patch", "*"),  # marks an outcome, removes the finalizer
}

# -- commands and clients -----------------------------------------------------------------------


def openfero(env: dict[str, str], *args: str) -> tuple[int, str]:
    """``openfero <args>`` in this process, with ``env``: its exit code and output."""
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def openfero_json(env: dict[str, str], *args: str) -> Any:
    code, output = openfero(env, *args, "--json")
    assert code == 0, output
    return json.loads(output)


async def start_client(broker: BrokerSettings, ingest: IngestSettings | None = None, ready: bool = True) -> TestClient:
    """Ingest's app in this process, behind aiohttp's test client; once ready unless told otherwise."""
    app = create_app(broker, ingest or IngestSettings(publish_timeout_s=2.0))
    # As Alertmanager sends it; tests of other types say so.
    client = TestClient(TestServer(app), headers={"Content-Type": "application/json"})
    await client.start_server()
    if ready:
        await async_wait_for(lambda: ingest_ready(client), what="ingest ready")
    return client


async def ingest_ready(client: TestClient) -> bool:
    return (await client.get("/readiness")).status == 200


# -- headers no well-behaved client sends --------------------------------------------------------


class RawText(bytes):
    """Sent as an AMQP text header whatever its bytes, as other clients can; pamqp itself sends only UTF-8."""


def send_raw_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let pamqp send RawText as it is, for the test ``monkeypatch`` belongs to (conftest's ``raw_text_headers``)."""
    original = pamqp.encode.encode_table_value

    def encode(value: Any) -> bytes:
        if isinstance(value, RawText):
            return b"S" + struct.pack(">I", len(value)) + bytes(value)
        return original(value)

    monkeypatch.setattr(pamqp.encode, "encode_table_value", encode)


def _for_pika(value: Any) -> Any:
    """Header values as pika can send them: it has no floats, and sends bytes as a byte array."""
    if isinstance(value, float):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _for_pika(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_pika(v) for v in value]
    return value


def publish_without_id(amqp_url: str, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any] | None, content_type: str | None = None) -> None:
    """Publish as a client that sets no message id (aio-pika always sets one): pika, blocking."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        properties = pika.BasicProperties(headers=_for_pika(headers) if headers else None, content_type=content_type)
        connection.channel().basic_publish(exchange, routing_key, body, properties)
    finally:
        connection.close()
