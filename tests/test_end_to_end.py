"""The whole path with the real processes: webhook -> ingest -> RabbitMQ -> dispatcher -> Job.

ingest and dispatcher run as users run them (``python -m ...``), against the
real broker and the Kubernetes API double.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import reference_alert_bytes, reference_configmap, wait_for
from tests.harness import Pipeline, get_status, queue_depths
from tests.kube_double import KubeDouble
from tests.helpers import REFERENCE_ENV, job_definition, job_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def pipeline(processes, service_env, tmp_path, kube: KubeDouble) -> Pipeline:
    kube.apply("configmaps", "default", reference_configmap())
    return Pipeline(processes, service_env, tmp_path)


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_the_reference_alert_becomes_the_reference_job(processes, service_env, tmp_path, kube: KubeDouble, event_loop: str) -> None:
    kube.apply("configmaps", "default", reference_configmap())
    pipeline = Pipeline(processes, {**service_env, "OPENFERO_EVENT_LOOP": event_loop}, tmp_path)
    status, body = pipeline.post(reference_alert_bytes())
    assert (status, body) == (200, {"accepted": 1})
    [job] = wait_for(kube.jobs, what="the Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "python-job"
    assert container["image"] == "ubuntu:latest"
    assert container["args"] == ["bash", "-c", 'echo "Hallo Welt"']
    assert job_env(job) == REFERENCE_ENV
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["name"].startswith("openfero-kubequotaalmostfull-firing-")
    # the Job exists a moment before the dispatcher has logged it
    [created] = wait_for(lambda: pipeline.dispatcher.events("job.created"), what="the created log line")
    assert created["job"] == job["metadata"]["name"]
    logs = pipeline.dispatcher.logs()
    assert "spec.template.spec.imagePullPolicy" in logs  # the author is told what was dropped
    [configured] = pipeline.dispatcher.events("dispatcher.configured")
    [starting] = pipeline.ingest.events("ingest.starting")
    assert configured["event_loop"] == starting["event_loop"] == event_loop


def test_a_definition_added_while_running_is_used_for_the_next_alert(pipeline: Pipeline, kube: KubeDouble) -> None:
    first = {"alerts": [{"labels": {"alertname": "NewThing", "n": "1"}}]}
    assert pipeline.post(json.dumps(first).encode())[0] == 200
    wait_for(lambda: '"event": "alert.no_definition"' in pipeline.dispatcher.logs(), what="no-definition log")
    assert kube.jobs() == []
    kube.apply(
        "configmaps",
        "default",
        {"metadata": {"name": "openfero-newthing-firing", "labels": {"app": "openfero"}}, "data": {"NewThing": job_definition("new-thing", "fixer")}},
    )
    wait_for(lambda: '"object": "openfero-newthing-firing"' in pipeline.dispatcher.logs(), what="definition seen")
    second = {"alerts": [{"labels": {"alertname": "NewThing", "n": "2"}}]}
    assert pipeline.post(json.dumps(second).encode())[0] == 200
    [job] = wait_for(kube.jobs, what="the Job")
    assert job_env(job)["OPENFERO_N"] == "2"


def test_bad_input_leaves_the_real_service_healthy(pipeline: Pipeline) -> None:
    assert pipeline.post(b"nope")[0] == 400
    assert pipeline.post(b'{"alerts": [{"labels": {"a": 1}}]}')[0] == 422
    assert get_status(pipeline.url + "/healthz") == 200
    assert pipeline.ingest.proc.poll() is None


def test_sigterm_stops_both_services_cleanly(pipeline: Pipeline) -> None:
    assert pipeline.ingest.stop() == 0
    assert pipeline.dispatcher.stop() == 0


def test_ingest_on_sigterm_finishes_the_webhook_it_is_storing(processes, service_env, tmp_path, amqp_url, prefix) -> None:
    import threading

    from tests.conftest import free_port
    from tests.harness import Process, post
    from tests.tcp_proxy import ThreadedTcpProxy, broker_proxy_url

    # Given ingest whose broker has stopped answering, mid-webhook
    listen = free_port()
    host, broker_port, proxied_url = broker_proxy_url(amqp_url, listen)
    proxy = ThreadedTcpProxy(host, broker_port, listen)
    port = free_port()
    env = {
        **service_env,
        "OPENFERO_AMQP_URL": proxied_url,
        "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}",
        "OPENFERO_PUBLISH_TIMEOUT_SECONDS": "10",
    }
    ingest = Process("ingest", env, tmp_path / "ingest.log")
    processes.append(ingest)
    try:
        wait_for(lambda: get_status(f"http://127.0.0.1:{port}/readiness") == 200, what="ingest ready")
        proxy.stall()
        answer: list[tuple[int, dict]] = []
        request = threading.Thread(target=lambda: answer.append(post(f"http://127.0.0.1:{port}/alerts", reference_alert_bytes())))
        request.start()
        time.sleep(0.5)
        # When it gets SIGTERM, then the broker answers again
        ingest.proc.terminate()
        time.sleep(0.5)
        assert get_status(f"http://127.0.0.1:{port}/healthz") == 0  # it no longer accepts
        proxy.resume()
        request.join(15)
        # Then the webhook in flight got its 200, the alert is stored, and ingest exits 0
        assert answer and answer[0][0] == 200
        assert ingest.proc.wait(15) == 0
        assert queue_depths(amqp_url, prefix)["work"] == 1
    finally:
        proxy.close()


def test_an_operarius_creates_its_rendered_job_and_records_the_run(processes, double_env, tmp_path, kube_double, amqp_url, prefix) -> None:
    import yaml

    from tests.conftest import ROOT

    # Given the shipped Operarius in the cluster, beside a ConfigMap for the same alert
    operarius = yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text())
    kube_double.apply("operariuses", "default", operarius)
    kube_double.apply(
        "configmaps",
        "default",
        {"metadata": {"name": "openfero-kubepodcrashlooping-firing", "labels": {"app": "openfero"}}, "data": {"KubePodCrashLooping": "kind: Job"}},
    )
    pipeline = Pipeline(processes, double_env, tmp_path)
    # When the Go original's test alert arrives
    assert pipeline.post((ROOT / "examples" / "kubepodcrashlooping.alert.json").read_bytes())[0] == 200
    # Then the Operarius' Job is created, rendered for the alert
    [job] = wait_for(kube_double.jobs, what="the Job")
    assert job["metadata"]["name"].startswith("pod-crashloop-restart-")
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "openfero-pod-restarter"
    env_vars = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env_vars["SUMMARY"] == "Pod is crash looping." and env_vars["OPENFERO_POD"] == "test-crashloop-pod"
    assert env_vars["OPENFERO_NAMESPACE"] == "default" and '-- "$OPENFERO_POD"' in pod["containers"][0]["command"][2]
    assert job["spec"]["template"]["metadata"]["labels"]["pod"] == "test-crashloop-pod"
    # and the run is written back to its status
    status = wait_for(lambda: kube_double.list("operariuses", "default")[0].get("status"), what="the Operarius status")
    assert status["executionCount"] == 1 and status["lastJob"] == job["metadata"]["name"] and status["lastOutcome"] == "Created"
    [created] = pipeline.dispatcher.events("job.created")
    assert created["operarius"] == "default/pod-crashloop-restart"


def test_a_cluster_without_the_operarius_crd_still_serves_configmap_definitions(processes, service_env, tmp_path, amqp_url, prefix) -> None:
    from tests.conftest import write_kubeconfig

    double = KubeDouble(operarius_plural=None).start()
    try:
        double.apply("configmaps", "default", reference_configmap())
        env = {**service_env, "KUBECONFIG": str(write_kubeconfig(double, tmp_path))}
        pipeline = Pipeline(processes, env, tmp_path)
        assert pipeline.post(reference_alert_bytes())[0] == 200
        wait_for(double.jobs, what="the Job")
        assert pipeline.dispatcher.events("definitions.kind_missing")
    finally:
        double.stop()


def test_one_grep_follows_an_alert_and_metrics_count_it(pipeline: Pipeline, kube: KubeDouble, amqp_url: str) -> None:
    import urllib.request

    status, _ = pipeline.post(reference_alert_bytes())
    assert status == 200
    [job] = wait_for(kube.jobs, what="the Job")
    fingerprint = job["metadata"]["labels"]["openfero.io/fingerprint"]
    wait_for(lambda: pipeline.dispatcher.events("job.created"), what="the created log line")
    # One grep for the fingerprint finds the alert's whole path, each line with its message id
    lines = [json.loads(line) for p in (pipeline.ingest, pipeline.dispatcher) for line in p.logs().splitlines() if fingerprint in line]
    events = [line["event"] for line in lines]
    assert events[0] == "alert.accepted" and "job.created" in events
    assert len({line["message_id"] for line in lines}) == 1
    created = next(line for line in lines if line["event"] == "job.created")
    assert created["job"] == job["metadata"]["name"] and created["attempt"] == 1
    # and no secret: the broker URL's password is in no log line
    password = amqp_url.split("@")[0].rsplit(":", 1)[1]
    for process in (pipeline.ingest, pipeline.dispatcher):
        assert f":{password}@" not in process.logs()
    # The dispatcher's metrics, on the port it logged
    [listening] = pipeline.dispatcher.events("metrics.listening")
    with urllib.request.urlopen(f"http://127.0.0.1:{listening['port']}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'openfero_messages_handled_total{alertname="KubeQuotaAlmostFull",outcome="created"} 1.0' in text
    assert 'openfero_definitions_loaded{kind="ConfigMap"} 1.0' in text
    assert 'openfero_kube_api_up{kind="ConfigMap"} 1.0' in text
    assert "openfero_broker_connected 1.0" in text
    assert "openfero_job_create_duration_seconds_count 1.0" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{listening['port']}/healthz", timeout=5) as response:
        assert response.status == 200


def test_a_dispatcher_that_may_not_read_operarii_waits_instead_of_guessing(processes, double_env, tmp_path, kube_double, amqp_url, prefix) -> None:
    # Given RBAC that forbids reading Operarii
    kube_double.apply("configmaps", "default", reference_configmap())
    kube_double.add_fault("GET", r"/operariuses$", status=403)
    pipeline = Pipeline(processes, double_env, tmp_path, dispatchers=0)
    dispatcher = pipeline.start_dispatcher(wait=False)
    assert pipeline.post(reference_alert_bytes())[0] == 200
    # Then it says why and consumes nothing: the alert waits in the queue
    wait_for(lambda: any(e.get("http_status") == 403 for e in dispatcher.events("definitions.error")), what="the 403 logged")
    time.sleep(1)
    assert kube_double.jobs() == [] and queue_depths(amqp_url, prefix)["work"] == 1
    # and once RBAC is fixed it goes on
    kube_double.clear_faults()
    wait_for(kube_double.jobs, timeout_s=30, what="the Job after the fix")
