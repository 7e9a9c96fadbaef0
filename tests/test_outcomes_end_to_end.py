"""Outcomes with the real processes: two dispatchers, one leader, every outcome counted once.

The test plays the Job controller on the API double; the dispatchers run
as users run them, with short Lease timings.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from dispatcher.naming import dns_label
from tests.conftest import ROOT, reference_configmap, wait_for
from tests.harness import LEASE_ENV, Pipeline, counted_here, finished_with, leader, outcome, summed
from tests.kube_double import KubeDouble
from tests.helpers import BREAKER_GRANTS, DISPATCHER_NAMESPACE_GRANTS, JOB_NAMESPACE_GRANTS, openfero, openfero_json

pytestmark = pytest.mark.e2e

OPERARIUS = yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text())


@pytest.fixture
def env(double_env: dict[str, str]) -> dict[str, str]:
    return {**double_env, **LEASE_ENV}


@pytest.fixture
def definitions(kube_double: KubeDouble) -> KubeDouble:
    kube_double.apply("configmaps", "default", reference_configmap())
    kube_double.apply("operariuses", "default", OPERARIUS)
    return kube_double


def webhook(quota: list[str], crashloop: list[str]) -> bytes:
    """Quota alerts (the reference ConfigMap's) for these namespaces, crash loops (the Operarius') for these pods."""
    alerts = [{"labels": {"alertname": "KubeQuotaAlmostFull", "namespace": ns}, "startsAt": "2026-01-01T00:00:00Z"} for ns in quota]
    alerts += [{"labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod}, "startsAt": "2026-01-01T00:00:00Z"} for pod in crashloop]
    return json.dumps({"version": "4", "status": "firing", "receiver": "openfero", "alerts": alerts}).encode()


def jobs_by_target(kube: KubeDouble) -> dict[str, str]:
    """Job name by the namespace (quota) or pod (crash loop) it was made for."""
    found = {}
    for job in kube.jobs():
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        found[env.get("OPENFERO_POD") or env["OPENFERO_NAMESPACE"]] = job["metadata"]["name"]
    return found


def check_rbac(kube: KubeDouble, prefix: str) -> None:
    """Every request was one the shipped Roles allow, and every grant was used."""
    leases = {dns_label(f"{prefix}-{lease}"): f"openfero-{lease}" for lease in ("outcomes", "storm", "breakers")}
    asked = set()
    for verb, group, resource, name in kube.authorized:
        granted_name = leases[name] if resource == "leases" and name in leases and verb != "create" else "*"
        asked.add((group, resource, verb, granted_name))
    grants = DISPATCHER_NAMESPACE_GRANTS | JOB_NAMESPACE_GRANTS
    assert asked - grants == set(), "asked for what the Roles do not grant"
    assert grants - asked - BREAKER_GRANTS == set(), "granted what no dispatcher used"


def test_two_dispatchers_count_each_outcome_once_and_a_new_leader_carries_on(processes, env, tmp_path, definitions: KubeDouble, prefix) -> None:
    kube = definitions
    pipeline = Pipeline(processes, env, tmp_path, dispatchers=2)
    # Given six alerts: three for the reference ConfigMap, three for the Operarius
    assert pipeline.post(webhook(["ns-a", "ns-b", "ns-c"], ["web-1", "web-2", "web-3"]))[0] == 200
    targets = wait_for(lambda: len(kube.jobs()) == 6 and jobs_by_target(kube), what="6 Jobs")
    first = leader(pipeline)
    # When the Job controller runs them and ends them: four succeed, two fail
    # (the first mark of one meets a conflict, as when the controller writes in between)
    kube.add_fault("PATCH", rf"/jobs/{targets['ns-a']}$", status=409, times=1)
    for name in targets.values():
        kube.job_started(name)
    for target in ("ns-a", "ns-b", "web-1", "web-2"):
        kube.job_succeeded(targets[target])
    kube.job_failed(targets["ns-c"], reason="BackoffLimitExceeded")
    kube.job_failed(targets["web-3"], reason="DeadlineExceeded")
    wait_for(lambda: all(finished_with(kube, n) for n in targets.values()), timeout_s=20, what="all six recorded")
    # Then summed over both dispatchers, each outcome counted once, as the Go original names them
    both = pipeline.dispatchers
    assert summed(both, "openfero_jobs_succeeded_total{}") == 4
    assert summed(both, "openfero_jobs_failed_total{}") == 2
    assert summed(both, "openfero_jobs_created_total{}") == 6
    assert summed(both, "openfero_remediations_total{definition=openfero-kubequotaalmostfull-firing,outcome=succeeded}") == 2
    assert summed(both, "openfero_remediations_total{definition=pod-crashloop-restart,outcome=failed}") == 1
    assert summed(both, "openfero_remediation_duration_seconds_count{outcome=succeeded}") == 4
    assert summed(both, "openfero_time_to_remediate_seconds_count{outcome=failed}") == 2
    assert summed(both, "openfero_outcome_leader{}") == 1
    # the Operarius counts its three runs exactly (two dispatchers wrote them) and says how the last one ended
    status = kube.get("operariuses", "default", "pod-crashloop-restart")["status"]  # type: ignore[index]
    assert status["executionCount"] == 3
    last = status["lastExecutedJobName"]
    assert last in {targets["web-1"], targets["web-2"], targets["web-3"]}
    assert status["lastExecutionStatus"] == ("Failed" if last == targets["web-3"] else "Successful")
    # an Event each, on its definition
    events = {e["related"]["name"]: e for e in kube.list("events", "default")}
    assert {n: events[n]["reason"] for n in targets.values()} == {
        n: ("RemediationFailed" if t in ("ns-c", "web-3") else "RemediationSucceeded") for t, n in targets.items()
    }
    # and openfero history shows each alert with the Job it became and how it ended
    history = openfero_json(env, "history", "--since", "10m")
    rows = {a["jobs"][0]["job"]: a["jobs"][0]["outcome"] for a in history["alerts"]}
    assert rows == {n: ("Failed" if t in ("ns-c", "web-3") else "Succeeded") for t, n in targets.items()}
    failed = openfero_json(env, "history", "--since", "10m", "--outcome", "failed", "--alertname", "KubePodCrashLooping")
    assert [(a["jobs"][0]["job"], a["jobs"][0]["reason"]) for a in failed["alerts"]] == [(targets["web-3"], "DeadlineExceeded")]

    # When two more Jobs end just as the leader stops
    assert pipeline.post(webhook(["ns-d", "ns-e"], []))[0] == 200
    targets = wait_for(lambda: len(kube.jobs()) == 8 and jobs_by_target(kube), what="8 Jobs")
    kube.job_succeeded(targets["ns-d"])
    assert first.stop() == 0
    kube.job_failed(targets["ns-e"])
    # Then the other dispatcher leads and picks up where it stopped
    survivor = leader(pipeline)
    assert survivor is not first
    wait_for(lambda: finished_with(kube, targets["ns-d"]) and finished_with(kube, targets["ns-e"]), timeout_s=20, what="both recorded")
    assert (outcome(kube, targets["ns-d"]), outcome(kube, targets["ns-e"])) == ("Succeeded", "Failed")
    assert counted_here(pipeline.dispatchers) == {n: 1 for n in targets.values()}
    # and everything the dispatchers asked of the API, the shipped RBAC grants, and nothing more
    check_rbac(kube, prefix)


def test_a_job_deleted_while_no_dispatcher_runs_is_recorded_as_deleted(processes, env, tmp_path, definitions: KubeDouble) -> None:
    kube = definitions
    pipeline = Pipeline(processes, env, tmp_path, dispatchers=1)
    assert pipeline.post(webhook(["ns-a", "ns-b"], []))[0] == 200
    targets = wait_for(lambda: len(kube.jobs()) == 2 and jobs_by_target(kube), what="2 Jobs")
    kube.job_started(targets["ns-a"])
    # Given no dispatcher running
    assert pipeline.dispatcher.stop() == 0
    # When one Job is deleted before it finished and the other succeeds
    assert kube.delete("jobs", "default", targets["ns-a"]) is not None  # the finalizer keeps it
    kube.job_succeeded(targets["ns-b"])
    time.sleep(0.5)
    assert kube.get("jobs", "default", targets["ns-a"]) is not None
    # Then the next dispatcher records both, and the deleted Job goes once recorded
    pipeline.dispatchers.append(pipeline.start_dispatcher())
    wait_for(lambda: finished_with(kube, targets["ns-a"]) and finished_with(kube, targets["ns-b"]), timeout_s=20, what="both recorded")
    assert kube.get("jobs", "default", targets["ns-a"]) is None
    assert outcome(kube, targets["ns-b"]) == "Succeeded"
    history = openfero_json(env, "history", "--since", "10m", "--outcome", "Deleted")
    assert [a["jobs"][0]["job"] for a in history["alerts"]] == [targets["ns-a"]]
    assert summed([pipeline.dispatchers[-1]], "openfero_remediations_total{definition=openfero-kubequotaalmostfull-firing,outcome=deleted}") == 1


def test_with_tracking_off_jobs_carry_no_finalizer_and_nobody_leads(processes, env, tmp_path, definitions: KubeDouble, prefix) -> None:
    kube = definitions
    pipeline = Pipeline(processes, {**env, "OPENFERO_TRACK_OUTCOMES": "0"}, tmp_path, dispatchers=1)
    assert pipeline.post(webhook(["ns-a"], []))[0] == 200
    [job] = wait_for(kube.jobs, what="the Job")
    assert "finalizers" not in job["metadata"]
    assert pipeline.dispatcher.events("dispatcher.configured")[0]["track_outcomes"] is False
    # (storm control's wait leader has a Lease of its own)
    assert [lease["metadata"]["name"] for lease in kube.list("leases", "default")] == [dns_label(f"{prefix}-storm")]
    assert not pipeline.dispatcher.events("leader.elected")



def test_the_uninstall_script_removes_only_openferos_finalizer(kube_double: KubeDouble, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import write_kubeconfig

    def job(name: str, finalizers: list[str], managed: bool = True) -> dict:
        labels = {"app.kubernetes.io/managed-by": "openfero"} if managed else {}
        spec = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "fixer"}]}}}
        return {"metadata": {"name": name, "finalizers": finalizers, "labels": labels}, "spec": spec}

    # Given openfero's Jobs with its finalizer, one being deleted and one with another finalizer too, and someone else's Job
    kube_double.add_namespace("openfero-jobs")
    for made in (job("a", ["openfero.io/outcome"]), job("b", ["openfero.io/outcome"]), job("c", ["example.com/keep", "openfero.io/outcome"]), job("x", ["openfero.io/outcome"], managed=False)):
        kube_double.apply("jobs", "openfero-jobs", made)
    kube_double.delete("jobs", "openfero-jobs", "b")
    # When the shipped script runs (kubectl from the test tools, jq from Debian)
    env = {**os.environ, "KUBECONFIG": str(write_kubeconfig(kube_double, tmp_path)), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    result = subprocess.run([str(ROOT / "scripts" / "remove-outcome-finalizers")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # Then openfero's finalizer is gone from its Jobs, the deleted one with it, and nothing else changed
    finalizers = {j["metadata"]["name"]: j["metadata"].get("finalizers") for j in kube_double.jobs("openfero-jobs")}
    assert finalizers == {"a": [], "c": ["example.com/keep"], "x": ["openfero.io/outcome"]}


def test_history_before_anything_was_recorded_says_so(env, prefix) -> None:

    # A prefix no process has declared yet: neither the archive nor the outcome stream exists
    code, output = openfero(env, "history")
    assert code == 0
    assert f"{prefix}.archive does not exist yet" in output and f"{prefix}.outcomes does not exist yet" in output
    assert "0 alert occurrences" in output
