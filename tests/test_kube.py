"""Creating Jobs and watching definitions through the official client, against the API double."""

from __future__ import annotations

import logging
import time

import pytest
import yaml
from kubernetes import client

import functools

from dispatcher.catalog import Catalog
from dispatcher.watching import ResourceWatcher
from shared.envelope import envelopes_from_webhook
from dispatcher.jobs import ApiFailure, JobCreator, load_api_client
from dispatcher.rendering import JobRules, render
from shared.settings import KubeSettings
from tests.cluster import ApiCluster
from tests.conftest import reference_configmap, wait_for, write_kubeconfig
from tests.kube_double import KubeDouble
from tests.helpers import reference_definition, reference_envelope


@pytest.fixture
def kube(kube_double: KubeDouble) -> KubeDouble:
    """These tests inject faults and expire watches: always the API double."""
    return kube_double


@pytest.fixture
def api(kube, tmp_path, monkeypatch) -> client.ApiClient:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube, tmp_path)))
    api_client, namespace = load_api_client(timeout_s=2)
    assert namespace == "default"  # from the kubeconfig context
    return api_client


def creator(api, namespace="default", timeout_s=2.0) -> JobCreator:
    return JobCreator(api, KubeSettings(job_namespace=namespace, request_timeout_s=timeout_s), concurrency=4)


def reference_job() -> dict:
    return render(reference_definition(), reference_envelope(), JobRules(60)).body


async def test_reference_job_is_created_and_a_second_create_finds_it(api, kube: KubeDouble) -> None:
    from dispatcher.metrics import JOBS_CREATED

    jobs = creator(api)
    before = JOBS_CREATED._value.get()
    assert await jobs.create(reference_job()) is True
    assert await jobs.create(reference_job()) is False  # 409: it exists already
    assert JOBS_CREATED._value.get() == before + 1  # openfero_jobs_created_total counts the one Job
    [stored] = kube.jobs()
    env = stored["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OPENFERO_ZONE", "value": "internal"} in env
    assert stored["metadata"]["labels"]["openfero.io/alertname"] == "KubeQuotaAlmostFull"


@pytest.mark.parametrize(
    ("status", "retry_after", "transient", "needs_operator"),
    [(500, None, True, False), (503, None, True, False), (429, 7, True, False), (422, None, False, False), (400, None, False, False), (403, None, True, True)],
)
async def test_api_errors_are_classified(api, kube, status, retry_after, transient, needs_operator) -> None:
    kube.add_fault("POST", r"/jobs$", status=status, times=1, retry_after_s=retry_after)
    with pytest.raises(ApiFailure) as raised:
        await creator(api).create(reference_job())
    failure = raised.value
    assert (failure.status, failure.transient, failure.needs_operator) == (status, transient, needs_operator)
    assert failure.retry_after_s == retry_after
    assert kube.jobs() == []


async def test_a_missing_namespace_needs_an_operator(api, kube) -> None:
    with pytest.raises(ApiFailure) as raised:
        await creator(api, namespace="nowhere").create(reference_job())
    assert (raised.value.status, raised.value.needs_operator) == (404, True)
    assert 'namespaces "nowhere" not found' in str(raised.value)


async def test_a_hanging_api_is_a_transient_timeout(api, kube) -> None:
    kube.add_fault("POST", r"/jobs$", status=0, times=1, delay_s=3)
    started = time.monotonic()
    with pytest.raises(ApiFailure) as raised:
        await creator(api, timeout_s=0.5).create(reference_job())
    assert raised.value.transient and raised.value.status is None
    assert time.monotonic() - started < 2.5


def test_a_request_without_a_timeout_of_its_own_waits_at_most_the_clients(tmp_path, monkeypatch, kube) -> None:
    # Given an API server that takes 3 s to answer a list, and a client made with a timeout of 0.5 s
    kube.add_fault("GET", r"/configmaps$", status=0, times=1, delay_s=3)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube, tmp_path)))
    api_client, _ = load_api_client(timeout_s=0.5)
    # When a generated method is called without _request_timeout, Then it gives up, well before the answer
    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        client.CoreV1Api(api_client).list_namespaced_config_map("default")
    assert time.monotonic() - started < 2.5
    # A request that names its own timeout keeps it
    kube.add_fault("GET", r"/configmaps$", status=0, times=1, delay_s=1)
    assert client.CoreV1Api(api_client).list_namespaced_config_map("default", _request_timeout=2.5).items == []


async def test_an_unreachable_api_is_transient(tmp_path, monkeypatch, kube) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube, tmp_path)))
    api_client, _ = load_api_client(timeout_s=1)
    kube.stop()
    with pytest.raises(ApiFailure) as raised:
        await creator(api_client).create(reference_job())
    assert raised.value.transient and "unreachable" in str(raised.value)


async def test_reading_a_jobs_annotations_from_an_unreachable_api_is_transient(tmp_path, monkeypatch, kube) -> None:
    # What the silence's side asks before a Job: the same failure as a create's.
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube, tmp_path)))
    api_client, _ = load_api_client(timeout_s=1)
    kube.stop()
    with pytest.raises(ApiFailure) as raised:
        await creator(api_client).annotations("any-job")
    assert raised.value.transient and raised.value.status is None and "unreachable" in str(raised.value)


async def test_a_failed_tls_handshake_is_transient(tmp_path, monkeypatch, kube) -> None:
    config = kube.kubeconfig()
    cluster = config["clusters"][0]["cluster"]
    cluster["server"] = cluster["server"].replace("http://", "https://")  # TLS to a plain HTTP port
    cluster["insecure-skip-tls-verify"] = True
    path = tmp_path / "kubeconfig-tls"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    api_client, _ = load_api_client(timeout_s=1)
    with pytest.raises(ApiFailure) as raised:
        await creator(api_client).create(reference_job())
    assert raised.value.transient and raised.value.status is None
    assert "unreachable" in str(raised.value)
    assert kube.jobs() == []


async def test_the_double_validates_like_a_server(api, kube) -> None:
    job = reference_job()
    job["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "BAD NAME", "value": "x"})
    with pytest.raises(ApiFailure) as raised:
        await creator(api).create(job)
    assert raised.value.status == 422 and "BAD NAME" in str(raised.value)


# -- definitions ---------------------------------------------------------------------------


def configmap(name: str, key: str, text: str, labels: dict | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels if labels is not None else {"app": "openfero"}}, "data": {key: text}}


JOB = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fix}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}"


class Watched:
    """A catalog of ConfigMap definitions kept by a watcher, looked up by alertname and status."""

    def __init__(self, api: client.ApiClient):
        self.catalog = Catalog()
        self.catalog.operarii_synced.set()  # ConfigMaps only here
        core = client.CoreV1Api(api)
        self.watcher = ResourceWatcher(
            "ConfigMap",
            functools.partial(core.list_namespaced_config_map, "default", label_selector="app=openfero"),
            self.catalog.replace_configmaps,
            self.catalog.apply_configmap,
            watch_timeout_s=2,
        )
        self.watcher.start()
        wait_for(lambda: self.catalog.synced, what="first list")

    def lookup(self, alertname: str, status: str):
        alert = envelopes_from_webhook({"alerts": [{"labels": {"alertname": alertname}, "status": status}]})[0].alert
        return self.catalog.lookup(alert)


@pytest.fixture
def watched(api, kube):
    store = Watched(api)
    yield store
    store.watcher.stop()


def test_definitions_are_listed_by_selector_then_followed(kube, api) -> None:
    kube.apply("configmaps", "default", reference_configmap())
    kube.apply("configmaps", "default", configmap("openfero-other-firing", "Other", JOB, labels={"app": "else"}))
    store = Watched(api)
    watcher = store.watcher
    try:
        assert store.lookup("KubeQuotaAlmostFull", "firing").definition is not None
        assert store.lookup("Other", "firing").definition is None  # not selected
        # added, changed and deleted while running
        kube.apply("configmaps", "default", configmap("openfero-new-resolved", "New", JOB))
        wait_for(lambda: store.lookup("New", "resolved").definition, what="added definition")
        kube.apply("configmaps", "default", configmap("openfero-new-resolved", "New", JOB.replace("name: fix", "name: fix2")))
        wait_for(lambda: "fix2" in store.lookup("New", "resolved").definition.text, what="changed definition")
        kube.delete("configmaps", "default", "openfero-new-resolved")
        wait_for(lambda: store.lookup("New", "resolved").definition is None, what="deleted definition")
    finally:
        watcher.stop()


def test_lookup_is_case_insensitive_on_the_name_and_exact_on_the_key(kube, watched) -> None:
    kube.apply("configmaps", "default", configmap("openfero-mixedcase-firing", "MixedCase", JOB))
    wait_for(lambda: watched.lookup("MixedCase", "firing").definition, what="definition")
    wrong_key = watched.lookup("MIXEDCASE", "firing")
    assert wrong_key.definition is None and wrong_key.missing_key
    assert watched.lookup("MixedCase", "resolved").definition is None


def test_the_watch_survives_expiry_by_listing_again(kube, watched) -> None:
    # Given a watch whose resourceVersion the server has forgotten
    kube.compact()
    kube.close_watches()
    # When a definition changes afterwards, it still arrives
    kube.apply("configmaps", "default", configmap("openfero-late-firing", "Late", JOB))
    wait_for(lambda: watched.lookup("Late", "firing").definition, what="definition after 410")
    assert any(method == "GET" and "watch" not in path for method, path in kube.requests)


def test_the_watch_comes_back_after_api_errors(kube, watched) -> None:
    kube.add_fault("GET", r"/configmaps$", status=500, for_s=1.0)
    kube.close_watches()
    time.sleep(0.3)
    kube.apply("configmaps", "default", configmap("openfero-after-firing", "After", JOB))
    wait_for(lambda: watched.lookup("After", "firing").definition, timeout_s=15, what="definition after errors")


def test_an_invalid_yaml_definition_is_kept_with_its_error(kube, watched) -> None:
    kube.apply("configmaps", "default", configmap("openfero-broken-firing", "Broken", "kind: Job\nspec: [unclosed"))
    found = wait_for(lambda: watched.lookup("Broken", "firing").definition, what="broken definition")
    assert "not valid YAML" in found.parse_error


def test_the_cluster_adapter_that_drives_k3s_works_against_any_api_server(kube) -> None:
    # The adapter end-to-end tests use on K3s, checked here against the double.
    cluster = ApiCluster(kube.kubeconfig())
    cluster.apply("configmaps", "default", reference_configmap())
    cluster.apply("configmaps", "default", reference_configmap())  # replace when it exists
    assert [cm["metadata"]["name"] for cm in kube.list("configmaps", "default")] == ["openfero-kubequotaalmostfull-firing"]
    job = render(reference_definition(), reference_envelope(), JobRules(60)).body
    kube.apply("jobs", "default", job)
    assert [j["metadata"]["name"] for j in cluster.jobs()] == [job["metadata"]["name"]]
    cluster.clean()
    assert kube.list("configmaps", "default") == [] and cluster.jobs() == []


def test_an_operarius_crd_of_another_name_is_a_warning_that_names_it(tmp_path, caplog, monkeypatch) -> None:
    # Given a cluster whose Operarius CRD is openfero's first one (plural operarii)
    from dispatcher.assembling import watchers as definition_watchers

    double = KubeDouble(operarius_plural="operarii").start()
    watchers: list[ResourceWatcher] = []
    try:
        double.apply("operarii", "default", {"metadata": {"name": "old"}, "spec": {"jobTemplate": {"spec": {}}}})
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(double, tmp_path)))
        api_client, _ = load_api_client(timeout_s=5)
        catalog = Catalog()
        watchers = definition_watchers(api_client, KubeSettings(definitions_namespace="default"), catalog)
        # When the dispatcher lists its definitions
        with caplog.at_level(logging.INFO, logger="openfero.definitions"):
            for watcher in watchers:
                watcher.start()
            wait_for(lambda: catalog.synced, what="first lists")
        # Then it says, as a warning, which CRD it is not reading
        [warning] = [r for r in caplog.records if getattr(r, "event", "") == "definitions.kind_elsewhere"]
        assert warning.levelno == logging.WARNING and warning.served_as == "operarii.openfero.io"
        assert len(catalog) == 0
    finally:
        for watcher in watchers:
            watcher.stop()
        double.stop()
