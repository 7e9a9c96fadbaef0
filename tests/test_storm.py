"""Storm control against the real broker and the API double, in one process (tests.storm_rig):
the concurrency limit, the cool-down, the global limit."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from dispatcher.jobs import load_api_client
from shared.settings import BrokerSettings
from tests.conftest import async_wait_for, queue_depth, write_kubeconfig
from tests.kube_double import KubeDouble
from tests.storm_rig import JobController, Storm, alerts, storm_configmap


@pytest.fixture
def api(kube_double: KubeDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> client.ApiClient:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube_double, tmp_path)))
    return load_api_client(timeout_s=5, connections=32)[0]


async def run_storm(storm: Storm, controller: JobController, body: Any) -> None:
    stop = asyncio.Event()
    playing = asyncio.create_task(controller.run(stop))
    await storm.start()
    try:
        await body()
    finally:
        stop.set()
        await playing
        await storm.close()


async def test_fifty_alerts_with_a_limit_of_three_never_run_more_than_three_and_all_run(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, channel: Any) -> None:
    # Given three dispatchers and a definition that allows 3 Jobs at once, each Job running 0.2 s
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**{"openfero.io/concurrency": "3"}), dispatchers=3)
    controller = JobController(kube_double, run_s=0.2)

    async def body() -> None:
        # When 50 alerts arrive at once
        await storm.publish(alerts(50))
        # Then all 50 Jobs run, one after another three at a time
        await async_wait_for(lambda: len(controller.done) == 50, 90, "50 Jobs done")
        assert await queue_depth(channel, storm.names.wait_queue) == 0
        assert await queue_depth(channel, storm.names.dead_queue) == 0

    await run_storm(storm, controller, body)
    # Only the wait leader decides: no overshoot however many dispatchers handle the alerts
    assert controller.max_active == 3, controller.max_active
    assert len(kube_double.jobs()) == 50
    assert storm.outcomes("waiting") == 50 and storm.outcomes("created") == 50
    assert storm.outcomes("dead_lettered") == 0


async def test_a_limit_per_target_lets_other_targets_run_and_keeps_order(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings) -> None:
    # Given one Job at a time per pod
    annotations = {"openfero.io/concurrency": "1", "openfero.io/target-key": "namespace,pod"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=2)
    controller = JobController(kube_double, run_s=0.3)
    created: list[str] = []

    async def body() -> None:
        # When four alerts for pod web-a arrive, then one for web-b
        same = [a for a in alerts(4, pod="web-a")]
        other = alerts(1, pod="web-b")
        await storm.publish(same + other)
        # Then web-b's Job runs at once beside web-a's first, and web-a's run one at a time, oldest first
        await async_wait_for(lambda: len(controller.done) == 5, 60, "5 Jobs done")
        order = sorted(kube_double.jobs(), key=lambda j: (j["metadata"]["creationTimestamp"], int(j["metadata"]["resourceVersion"])))
        created.extend(j["metadata"]["annotations"]["openfero.io/target"] for j in order)
        mine = [j for j in order if j["metadata"]["annotations"]["openfero.io/target"] == "namespace=shop,pod=web-a"]
        ns = [int(next(e["value"] for e in j["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "OPENFERO_N")) for j in mine]
        assert ns == [0, 1, 2, 3]

    await run_storm(storm, controller, body)
    assert controller.max_active == 2
    assert created.index("namespace=shop,pod=web-b") <= 1


async def test_an_alert_within_the_cool_down_of_its_target_is_suppressed_not_dead_lettered(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, channel: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "openfero.dispatcher")
    # Given a cool-down of an hour per pod
    annotations = {"openfero.io/cooldown": "1h", "openfero.io/target-key": "pod"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=1)
    controller = JobController(kube_double, run_s=0.05)

    async def body() -> None:
        # When a pod's alert runs, then three more for it and one for another pod arrive
        await storm.publish(alerts(1, pod="web-a"))
        await async_wait_for(lambda: len(controller.done) == 1, 30, "the first Job")
        await storm.publish(alerts(3, pod="web-a", reason="again") + alerts(1, pod="web-b"))
        await async_wait_for(lambda: storm.outcomes("suppressed") == 3 and storm.outcomes("created") == 2, 10, f"suppressed {[dict(p['dispatcher'].outcomes) for p in storm.parts]}")

    await run_storm(storm, controller, body)
    # Then web-a has its one Job, web-b its own; the three are acknowledged and logged with the Job that covers them
    [first] = [j for j in kube_double.jobs() if j["metadata"]["annotations"]["openfero.io/target"] == "pod=web-a"]
    suppressed = [r for r in caplog.records if getattr(r, "event", "") == "alert.suppressed"]
    assert len(suppressed) == 3 and {r.covering_job for r in suppressed} == {first["metadata"]["name"]}
    assert await queue_depth(channel, storm.names.dead_queue) == 0
    assert storm.outcomes("dead_lettered") == 0


async def test_the_global_limit_holds_across_dispatchers_and_the_rest_wait_then_run(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, channel: Any) -> None:
    # Given two dispatchers and at most 5 Job creations per 2 s window, no per-definition limit
    storm = Storm(kube_double, api, broker_settings, storm_configmap(), dispatchers=2, global_per_window=5, window_s=2.0)
    controller = JobController(kube_double, run_s=0.05)

    async def body() -> None:
        # When 15 alerts arrive at once
        await storm.publish(alerts(15))
        await async_wait_for(lambda: len(kube_double.jobs()) == 15, 60, "15 Jobs")

    await run_storm(storm, controller, body)
    # Then no window of 2 s saw more than 5 per dispatcher (the stated bound: each counts the
    # other's Jobs once its watch shows them), and those over it waited on the broker
    times = sorted(kube_double.job_creation_times().values())
    worst = max(sum(1 for t in times if start <= t < start + 2.0) for start in times)
    assert worst <= 10, worst
    assert storm.outcomes("waiting") >= 5
    assert await queue_depth(channel, storm.names.dead_queue) == 0
