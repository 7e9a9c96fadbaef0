"""The API double keeps what a real API server does on the writes outcome tracking depends on.

Each behaviour here is the real server's (Kubernetes 1.24-1.34), checked
through the official client's own calls where it has them, so that the
tests built on the double cannot pass for a reason a cluster would not give.
"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dispatcher.requesting import MERGE_PATCH, call
from tests.conftest import ROOT
from tests.kube_double import KubeDouble

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "fix-1", "finalizers": ["openfero.io/outcome"], "labels": {"app.kubernetes.io/managed-by": "openfero"}},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "fixer"}]}}},
}


def patch(api: client.ApiClient, path: str, body: dict, content_type: str = MERGE_PATCH):  # type: ignore[no-untyped-def]
    return call(api, "PATCH", path, 2, body, content_type)


JOB_PATH = "/apis/batch/v1/namespaces/default/jobs/fix-1"


def test_a_job_with_a_finalizer_is_only_marked_when_deleted_and_goes_with_its_last_finalizer(api, kube_double: KubeDouble) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job("default", JOB)
    # DELETE: accepted (202), the object stays with deletionTimestamp
    answer = call(api, "DELETE", JOB_PATH, 2)
    assert answer.status == 202 and answer.body["metadata"]["deletionTimestamp"]
    marked = kube_double.get("jobs", "default", "fix-1")
    assert marked is not None and marked["metadata"]["deletionTimestamp"]
    # no new finalizer while it is being deleted
    refused = patch(api, JOB_PATH, {"metadata": {"finalizers": ["openfero.io/outcome", "other.io/x"]}})
    assert refused.status == 422 and "no new finalizers" in refused.message
    # a second DELETE changes nothing
    assert call(api, "DELETE", JOB_PATH, 2).body["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    # removing the last finalizer deletes it
    assert patch(api, JOB_PATH, {"metadata": {"finalizers": []}}).ok
    assert kube_double.get("jobs", "default", "fix-1") is None
    assert [e[3] for e in kube_double.events if e[1] == "jobs"] == ["ADDED", "MODIFIED", "DELETED"]


def test_a_write_naming_an_old_resource_version_is_a_conflict(api, kube_double: KubeDouble) -> None:
    created = client.BatchV1Api(api).create_namespaced_job("default", JOB)
    version = created.metadata.resource_version
    kube_double.job_started("fix-1")  # the Job controller wrote status in between
    stale = patch(api, JOB_PATH, {"metadata": {"resourceVersion": version, "annotations": {"a": "b"}}})
    assert stale.status == 409 and stale.body["reason"] == "Conflict" and "the object has been modified" in stale.message
    fresh = kube_double.get("jobs", "default", "fix-1")
    assert fresh is not None
    done = patch(api, JOB_PATH, {"metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"], "annotations": {"a": "b"}}})
    assert done.ok and done.body["metadata"]["annotations"] == {"a": "b"}
    # The main resource does not write status; its status subresource does not write the rest
    ignored = patch(api, JOB_PATH, {"status": {"succeeded": 5}, "metadata": {"labels": {"x": "y"}}})
    assert ignored.ok and ignored.body["status"].get("succeeded") is None and ignored.body["status"]["active"] == 1
    # A write that changes nothing does not make a new version
    again = patch(api, JOB_PATH, {"metadata": {"labels": {"x": "y"}}})
    assert again.body["metadata"]["resourceVersion"] == ignored.body["metadata"]["resourceVersion"]
    # Other patch types are not modelled: refused rather than applied with the wrong meaning
    assert patch(api, JOB_PATH, {"metadata": {}}, "application/strategic-merge-patch+json").status == 415


def test_the_job_controller_played_by_tests_writes_what_the_real_one_does(kube_double: KubeDouble, api) -> None:
    client.BatchV1Api(api).create_namespaced_job("default", JOB)
    kube_double.job_failed("fix-1", reason="DeadlineExceeded")
    status = client.BatchV1Api(api).read_namespaced_job("fix-1", "default").status
    assert [(c.type, c.reason) for c in status.conditions] == [("FailureTarget", "DeadlineExceeded"), ("Failed", "DeadlineExceeded")]
    assert status.failed == 1 and status.active == 0


def test_leases_take_microtimes_and_conflict_on_stale_replaces(api, kube_double: KubeDouble) -> None:
    leases = client.CoordinationV1Api(api)
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    bad = call(api, "POST", path, 2, {"metadata": {"name": "l"}, "spec": {"renewTime": "2026-01-01T00:00:00Z"}})
    assert bad.status == 400  # a MicroTime has six fractional digits
    assert call(api, "POST", path, 2, {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}).status == 422
    made = call(api, "POST", path, 2, {"metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 2, "renewTime": "2026-01-01T00:00:00.000000Z"}})
    assert made.status == 201
    assert call(api, "POST", path, 2, {"metadata": {"name": "l"}, "spec": {}}).status == 409
    first = call(api, "PUT", f"{path}/l", 2, {**made.body, "spec": {**made.body["spec"], "holderIdentity": "b"}})
    second = call(api, "PUT", f"{path}/l", 2, {**made.body, "spec": {**made.body["spec"], "holderIdentity": "c"}})
    assert (first.status, second.status) == (200, 409)
    assert leases.read_namespaced_lease("l", "default").spec.holder_identity == "b"


def test_events_must_be_in_their_objects_namespace(api) -> None:
    path = "/api/v1/namespaces/default/events"
    event = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "other"}, "reason": "R", "type": "Normal"}
    assert call(api, "POST", path, 2, event).status == 422
    event["involvedObject"]["namespace"] = "default"
    assert call(api, "POST", path, 2, event).status == 201
    assert call(api, "POST", path, 2, event).status == 409


def test_operarius_status_writes_are_pruned_and_checked_against_the_shipped_crd(api, kube_double: KubeDouble) -> None:
    import yaml

    kube_double.apply("operariuses", "default", yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text()))
    custom = client.CustomObjectsApi(api)
    current = custom.get_namespaced_custom_object("openfero.io", "v1alpha1", "default", "operariuses", "pod-crashloop-restart")
    written = custom.replace_namespaced_custom_object_status(
        "openfero.io", "v1alpha1", "default", "operariuses", "pod-crashloop-restart",
        {**current, "status": {"executionCount": 1, "lastOutcome": "Succeeded", "notInTheSchema": 1}, "spec": {"priority": 99}},
    )
    assert written["status"] == {"executionCount": 1, "lastOutcome": "Succeeded"}  # unknown fields pruned
    assert written["spec"]["priority"] == 50  # a status write writes only status
    with pytest.raises(ApiException) as refused:
        custom.replace_namespaced_custom_object_status(
            "openfero.io", "v1alpha1", "default", "operariuses", "pod-crashloop-restart", {**written, "status": {"lastOutcome": "Exploded"}}
        )
    assert refused.value.status == 422
    with pytest.raises(ApiException) as stale:
        custom.replace_namespaced_custom_object_status("openfero.io", "v1alpha1", "default", "operariuses", "pod-crashloop-restart", current)
    assert stale.value.status == 409
