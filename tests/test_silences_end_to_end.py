"""Page only when healing fails, end to end: the real Alertmanager (Debian's 0.25), ingest and dispatchers, a pager of the test's own.

Alertmanager routes every alert to openfero at once (group_wait 0s) and to
the on-call receiver, the test's pager, after group_wait 3s, then every
group_interval 2s: the worked example's routing with short timings. The
test pushes alerts as Prometheus does and plays the Job controller on the
API double.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.alertmanager import Alertmanager, Pager, routes
from tests.conftest import free_port, wait_for
from tests.harness import LEASE_ENV, Pipeline, finished_with
from tests.kube_double import KubeDouble
from tests.helpers import openfero_json, silenced_configmap

pytestmark = pytest.mark.e2e

GROUP_WAIT_S, GROUP_INTERVAL_S = 3.0, 2.0
ALERT = {"alertname": "KubeQuotaAlmostFull", "namespace": "shop", "resourcequota": "std"}


@pytest.fixture
def pager() -> Any:
    made = Pager()
    yield made
    made.close()


class Setup:
    """Alertmanager(s) routing to a pipeline of openfero and to the pager."""

    def __init__(self, processes: list, env: dict[str, str], tmp_path: Path, kube: KubeDouble, pager: Pager, deadline_s: int = 600, margin_s: float = 60, peers: int = 1, after_success: str = "keep", **extra_env: str):
        kube.apply("configmaps", "default", silenced_configmap(after_success, deadline_s))
        self.ports = [free_port() for _ in range(peers)]
        urls = ",".join(f"http://127.0.0.1:{p}" for p in self.ports)
        self.env = {**env, **LEASE_ENV, "OPENFERO_ALERTMANAGER_URLS": urls, "OPENFERO_SILENCE_MARGIN_SECONDS": str(margin_s), "OPENFERO_ALERTMANAGER_TIMEOUT_SECONDS": "1", **extra_env}
        self.pipeline = Pipeline(processes, self.env, tmp_path)
        self.config = routes(self.pipeline.url + "/alerts", pager.url, GROUP_WAIT_S, GROUP_INTERVAL_S)
        self.tmp_path = tmp_path
        self.kube = kube
        self.managers: list[Alertmanager] = []

    def start_alertmanagers(self) -> list[Alertmanager]:
        first = None
        for n, port in enumerate(self.ports):
            am = Alertmanager(self.tmp_path / f"am{n}", self.config, peer=first, clustered=len(self.ports) > 1, port=port).start()
            first = first or am
            self.managers.append(am)
        return self.managers

    def job(self) -> dict[str, Any]:
        [job] = wait_for(self.kube.jobs, what="the Job")
        return job

    def close(self) -> None:
        for am in self.managers:
            am.close()


@pytest.fixture
def setups() -> Any:
    made: list[Setup] = []
    yield made
    for setup in made:
        setup.close()


def poll(predicate: Any, timeout_s: float, what: str) -> Any:
    """wait_for with 5 ms between looks, for the figures the test prints."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def silence_of(job: dict[str, Any]) -> str:
    return job["metadata"]["annotations"]["openfero.io/silence-id"]


def test_a_remediation_that_succeeds_pages_nobody(processes, double_env, tmp_path, kube_double: KubeDouble, pager: Pager, setups) -> None:
    setup = Setup(processes, double_env, tmp_path, kube_double, pager, deadline_s=4, margin_s=1)
    setups.append(setup)
    [am] = setup.start_alertmanagers()
    # Given a firing alert whose remediation holds a silence of 5 s
    am.push(ALERT)
    pushed = time.monotonic()
    job = setup.job()
    assert am.silence(silence_of(job))["status"]["state"] == "active"  # type: ignore[index]
    # When the Job succeeds
    kube_double.job_succeeded(job["metadata"]["name"])
    wait_for(lambda: finished_with(kube_double, job["metadata"]["name"]), what="the outcome recorded")
    # Then the alert, still firing when the on-call route first flushes, pages nobody: the silence holds
    time.sleep(max(0.0, pushed + GROUP_WAIT_S + 0.5 - time.monotonic()))
    assert am.silence(silence_of(job))["status"]["state"] == "active"  # kept  # type: ignore[index]
    assert pager.received == []
    # and once it resolves, as Prometheus sees the fix, nobody is paged when the silence ends either
    am.resolve(ALERT)
    time.sleep(max(0.0, pushed + 5 + 2 * GROUP_INTERVAL_S + 1 - time.monotonic()))
    assert pager.received == []
    assert am.silence(silence_of(job))["status"]["state"] == "expired"  # ended by itself  # type: ignore[index]
    history = openfero_json(setup.env, "history", "--since", "10m")
    assert [j["silence"]["action"] for a in history["alerts"] for j in a["jobs"]] == ["kept"]


def test_a_remediation_that_fails_pages_within_one_group_interval(processes, double_env, tmp_path, kube_double: KubeDouble, pager: Pager, setups) -> None:
    setup = Setup(processes, double_env, tmp_path, kube_double, pager)
    setups.append(setup)
    [am] = setup.start_alertmanagers()
    am.push(ALERT)
    pushed = time.monotonic()
    poll(am.silences, timeout_s=GROUP_WAIT_S, what="the silence, before the on-call route's group_wait")
    print(f"alert pushed to silence made: {time.monotonic() - pushed:.3f} s")
    job = setup.job()
    # Given the on-call route's first flush came and went while the Job ran: nothing paged
    time.sleep(max(0.0, pushed + GROUP_WAIT_S + 0.5 - time.monotonic()))
    assert pager.received == []
    # When the Job fails
    kube_double.job_failed(job["metadata"]["name"], reason="BackoffLimitExceeded")
    failed = time.monotonic()
    poll(lambda: am.silence(silence_of(job))["status"]["state"] == "expired", timeout_s=10, what="the silence expired")  # type: ignore[index]
    expired = time.monotonic()
    # Then the page comes within one group_interval (and a little for the leader and the webhook)
    [(paged, labels)] = wait_for(pager.pages, timeout_s=10, what="a page")
    assert labels == ALERT
    took = paged - failed
    assert took <= GROUP_INTERVAL_S + 1.5, f"paged {took:.2f} s after the failure"
    print(f"failed Job to silence expired: {expired - failed:.3f} s; to page: {took:.2f} s (group_interval {GROUP_INTERVAL_S:g} s)")
    assert am.silence(silence_of(job))["status"]["state"] == "expired"  # type: ignore[index]
    history = openfero_json(setup.env, "history", "--since", "10m", "--outcome", "failed")
    [recorded] = [j for a in history["alerts"] for j in a["jobs"]]
    assert recorded["silence"]["action"] == "expired" and recorded["silence"]["id"] == silence_of(job)


def test_openfero_killed_mid_remediation_leaves_a_silence_that_ends_by_itself(processes, double_env, tmp_path, kube_double: KubeDouble, pager: Pager, setups) -> None:
    setup = Setup(processes, double_env, tmp_path, kube_double, pager, deadline_s=3, margin_s=1)
    setups.append(setup)
    [am] = setup.start_alertmanagers()
    am.push(ALERT)
    job = setup.job()
    ends_at = datetime.fromisoformat(job["metadata"]["annotations"]["openfero.io/silence-ends-at"].replace("Z", "+00:00"))
    # Given openfero gone in the middle of the remediation (nobody will record its end)
    setup.pipeline.dispatcher.proc.kill()
    setup.pipeline.dispatcher.proc.wait()
    # Then the silence ends at its end (deadline 3 s + margin 1 s), and the still-firing alert pages
    [(paged, _)] = wait_for(pager.pages, timeout_s=15, what="a page")
    silence = am.silence(silence_of(job))
    assert silence is not None and silence["status"]["state"] == "expired"
    ended = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert abs((ended - ends_at).total_seconds()) < 1  # its own end, not an expiry
    assert time.time() >= ended.timestamp()


def test_two_alertmanagers_in_a_cluster(processes, double_env, tmp_path, kube_double: KubeDouble, pager: Pager, setups) -> None:
    setup = Setup(processes, double_env, tmp_path, kube_double, pager, peers=2)
    setups.append(setup)
    first, second = setup.start_alertmanagers()
    # Given an alert sent to both peers, as Prometheus sends it: the silence is made on the first and gossiped
    first.push(ALERT)
    second.push(ALERT)
    job = setup.job()
    assert job["metadata"]["annotations"]["openfero.io/silence-alertmanager"] == first.url
    wait_for(lambda: second.silence(silence_of(job)), timeout_s=5, what="the silence gossiped")
    time.sleep(GROUP_WAIT_S + 0.5)
    assert pager.received == []
    # When the first peer is gone and the Job fails
    first.kill()
    kube_double.job_failed(job["metadata"]["name"])
    # Then the silence is expired on the second, which pages
    [(_, labels)] = wait_for(pager.pages, timeout_s=10, what="a page from the second peer")
    assert labels == ALERT
    assert second.silence(silence_of(job))["status"]["state"] == "expired"  # type: ignore[index]
    # and a new alert, with the first still gone, gets its silence on the second
    other = {**ALERT, "namespace": "billing"}
    second.push(other)
    wait_for(lambda: len(kube_double.jobs()) == 2, what="the second Job")
    [new] = [j for j in kube_double.jobs() if j["metadata"]["name"] != job["metadata"]["name"]]
    assert new["metadata"]["annotations"]["openfero.io/silence-alertmanager"] == second.url
    assert second.silence(silence_of(new))["status"]["state"] == "active"  # type: ignore[index]


def _webhook(labels: dict[str, str]) -> bytes:
    import json

    return json.dumps({"version": "4", "status": "firing", "receiver": "openfero", "alerts": [{"labels": labels, "startsAt": "2026-01-01T00:00:00Z"}]}).encode()
