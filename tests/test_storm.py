"""Storm control against the real broker and the API double, in one process (tests.storm_rig):
the concurrency limit, the cool-down, the global limit, the breaker and its commands."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from prometheus_client import REGISTRY

from dispatcher.breaking import read_states
from dispatcher.jobs import load_api_client
from dispatcher.storm import Breaker, BreakerState
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
    # Given one Job at a time per pod, and a Job for pod web-a running
    annotations = {"openfero.io/concurrency": "1", "openfero.io/concurrency-key": "namespace,pod"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=2)
    controller = JobController(kube_double, run_s=0.5)

    def n_of(job: dict[str, Any]) -> int:
        return int(next(e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "OPENFERO_N"))

    async def body() -> None:
        same = alerts(4, pod="web-a")  # received a millisecond apart, oldest first
        await storm.publish(same[:1])
        await async_wait_for(lambda: len(kube_double.jobs()) == 1, 30, "web-a's first Job")
        # When three more alerts for web-a arrive, newest first, and one for web-b
        await storm.publish([*reversed(same[1:]), *alerts(1, pod="web-b")])
        # Then web-b's Job runs at once beside web-a's, and web-a's run one at a time, oldest first
        await async_wait_for(lambda: len(controller.done) == 5, 60, "5 Jobs done")
        created = kube_double.job_creation_times()
        jobs = {j["metadata"]["name"]: j for j in kube_double.jobs()}
        order = sorted(created, key=created.__getitem__)
        targets = [jobs[name]["metadata"]["annotations"]["openfero.io/concurrency-target"] for name in order]
        assert targets.index("namespace=shop,pod=web-b") == 1
        assert [n_of(jobs[name]) for name in order if targets[order.index(name)] == "namespace=shop,pod=web-a"] == [0, 1, 2, 3]

    await run_storm(storm, controller, body)
    assert controller.max_active == 2


async def test_an_alert_within_the_cool_down_of_its_target_is_suppressed_not_dead_lettered(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, channel: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "openfero.dispatcher")
    # Given a cool-down of an hour per pod
    annotations = {"openfero.io/cooldown": "1h", "openfero.io/cooldown-key": "pod"}
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
    [first] = [j for j in kube_double.jobs() if j["metadata"]["annotations"]["openfero.io/cooldown-target"] == "pod=web-a"]
    suppressed = [r for r in caplog.records if getattr(r, "event", "") == "alert.suppressed"]
    assert len(suppressed) == 3 and {r.covering_job for r in suppressed} == {first["metadata"]["name"]}
    # and `openfero history` shows them as suppressed, naming that Job
    env = {"OPENFERO_QUEUE_PREFIX": broker_settings.queue_prefix, "OPENFERO_AMQP_URL": broker_settings.amqp_url}
    history = json.loads((await cli("history", "--since", "10m", "--outcome", "suppressed", "--json", **env)).output)
    assert len(history["alerts"]) == 3
    assert {o["reason"] for a in history["alerts"] for o in a["jobs"]} == {f"within the cool-down of Job {first['metadata']['name']}"}
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


# -- the breaker ---------------------------------------------------------------------------------

DEFINITION = "default/openfero-kubepodcrashlooping-firing/KubePodCrashLooping"


def breaker_of(kube: KubeDouble, prefix: str) -> BreakerState:
    return read_states(kube.get("leases", "default", f"{prefix}-breakers")).get(DEFINITION, BreakerState())


async def cli(*args: str, **env: str) -> Any:
    from click.testing import CliRunner

    from openfero.cli import main

    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env, catch_exceptions=False)
    return result


async def test_the_breaker_opens_after_three_failures_parks_and_closes_by_command(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, prefix: str, channel: Any) -> None:
    # Given a breaker of 3 failures with an hour's cool-down, two dispatchers, and Jobs that fail
    annotations = {"openfero.io/breaker-failures": "3", "openfero.io/breaker-cooldown": "1h"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=2)
    failing = {"now": True}
    controller = JobController(kube_double, run_s=0.05, fails=lambda name: failing["now"])
    env = {"OPENFERO_QUEUE_PREFIX": prefix, "OPENFERO_AMQP_URL": broker_settings.amqp_url, "OPENFERO_DEFINITIONS_NAMESPACE": "default", "OPENFERO_DISPATCHER_NAMESPACE": "default"}

    async def body() -> None:
        # When three Jobs fail one after another
        await storm.publish(alerts(3))
        await async_wait_for(lambda: breaker_of(kube_double, prefix).state is Breaker.OPEN, 30, "the breaker open")
        # Then it is open, says so in the metric and in `openfero definitions list`
        await async_wait_for(lambda: all(p["control"].board.breaker(DEFINITION) is Breaker.OPEN for p in storm.parts), 10, "every dispatcher sees it")
        assert REGISTRY.get_sample_value("openfero_breaker_open", {"definition": "openfero-kubepodcrashlooping-firing"}) == 1
        listed = await cli("definitions", "list", **env)
        assert listed.exit_code == 0, listed.output
        [line] = [x for x in listed.output.splitlines() if x.startswith("openfero-kubepodcrashlooping-firing")]
        assert "OPEN" in line and "FFF" in line and "breaker 3/3600s" in line
        # and new alerts are parked, not run, not dead-lettered
        await storm.publish(alerts(2, reason="later"))
        await async_wait_for(lambda: storm.outcomes("parked") == 2, 20, "2 parked")
        assert len(kube_double.jobs()) == 3
        assert await queue_depth(channel, storm.names.parked_queue) == 2
        shown = await cli("parked", "list", "--json", **env)
        assert json.loads(shown.output)["matched"] == 2
        # When the operator resumes it and replays what was parked
        failing["now"] = False
        resumed = await cli("definitions", "resume", "openfero-kubepodcrashlooping-firing", **env)
        assert resumed.exit_code == 0, resumed.output
        assert breaker_of(kube_double, prefix).state is Breaker.CLOSED
        await async_wait_for(lambda: all(p["control"].board.breaker(DEFINITION) is Breaker.CLOSED for p in storm.parts), 10, "every dispatcher sees it closed")
        replayed = await cli("parked", "replay", **env)
        assert "replayed 2" in replayed.output, replayed.output
        # Then the parked alerts run
        await async_wait_for(lambda: len(controller.done) == 5, 30, "5 Jobs done")
        assert await queue_depth(channel, storm.names.parked_queue) == 0
        again = await cli("definitions", "resume", "openfero-kubepodcrashlooping-firing", **env)
        assert again.exit_code == 1  # nothing open

    await run_storm(storm, controller, body)
    assert storm.outcomes("dead_lettered") == 0
    assert REGISTRY.get_sample_value("openfero_breaker_open", {"definition": "openfero-kubepodcrashlooping-firing"}) == 0


async def test_an_open_breaker_lets_one_trial_job_through_after_its_cool_down_and_closes_when_it_succeeds(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, prefix: str, channel: Any) -> None:
    annotations = {"openfero.io/breaker-failures": "3", "openfero.io/breaker-cooldown": "1s"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=2)
    failing = {"now": True}
    controller = JobController(kube_double, run_s=0.05, fails=lambda name: failing["now"])

    async def body() -> None:
        # Given a breaker opened by three failures
        await storm.publish(alerts(3))
        await async_wait_for(lambda: breaker_of(kube_double, prefix).state is Breaker.OPEN, 30, "the breaker open")
        # When its cool-down has passed and three alerts come at once, to both dispatchers
        await async_wait_for(lambda: all(p["control"].board.state(DEFINITION).state is Breaker.TRIAL for p in storm.parts), 10, "trial")
        failing["now"] = False
        controller.hold = True  # the trial runs until the test lets it end
        await storm.publish(alerts(3, reason="later"))
        # Then one runs as the trial, the two others are parked
        await async_wait_for(lambda: storm.outcomes("parked") == 2 and len(kube_double.jobs()) == 4, 20, "one trial, two parked")
        trial = breaker_of(kube_double, prefix).trial_job
        assert trial and kube_double.get("jobs", "default", trial) is not None
        # and when the trial succeeds, the breaker closes
        controller.hold = False
        await async_wait_for(lambda: breaker_of(kube_double, prefix).state is Breaker.CLOSED, 20, "closed")
        await async_wait_for(lambda: all(p["control"].board.breaker(DEFINITION) is Breaker.CLOSED for p in storm.parts), 10, "every dispatcher sees it closed")
        await storm.publish(alerts(1, reason="after"))
        await async_wait_for(lambda: len(kube_double.jobs()) == 5, 20, "a Job again")

    await run_storm(storm, controller, body)
    assert await queue_depth(channel, storm.names.parked_queue) == 2


async def test_what_storm_control_asks_of_the_api_the_shipped_roles_grant_and_its_grants_are_used(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, prefix: str) -> None:
    from dispatcher.naming import dns_label
    from tests.helpers import BREAKER_GRANTS, DISPATCHER_NAMESPACE_GRANTS, JOB_NAMESPACE_GRANTS

    # Given a breaker that opens and is resumed, and a limit: every part of storm control at work
    annotations = {"openfero.io/breaker-failures": "2", "openfero.io/breaker-cooldown": "1h", "openfero.io/concurrency": "2", "openfero.io/cooldown": "1s", "openfero.io/cooldown-key": "pod"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=2)
    controller = JobController(kube_double, run_s=0.05, fails=lambda name: True)
    kube_double.authorized.clear()

    async def body() -> None:
        await storm.publish(alerts(2))
        await async_wait_for(lambda: breaker_of(kube_double, prefix).state is Breaker.OPEN, 30, "the breaker open")
        await async_wait_for(lambda: all(p["control"].board.breaker(DEFINITION) is Breaker.OPEN for p in storm.parts), 10, "seen")
        await storm.publish(alerts(1, reason="later"))
        await async_wait_for(lambda: storm.outcomes("parked") == 1, 20, "parked")

    await run_storm(storm, controller, body)
    leases = {dns_label(f"{prefix}-{lease}"): f"openfero-{lease}" for lease in ("outcomes", "storm", "breakers")}
    asked = {(g, r, v, leases[n] if r == "leases" and n in leases and v != "create" else "*") for v, g, r, n in kube_double.authorized}
    storm_grants = {
        ("coordination.k8s.io", "leases", "create", "*"),
        ("coordination.k8s.io", "leases", "get", "openfero-storm"),
        ("coordination.k8s.io", "leases", "update", "openfero-storm"),
        ("coordination.k8s.io", "leases", "get", "openfero-breakers"),
        *BREAKER_GRANTS,
        ("batch", "jobs", "list", "*"),
        ("batch", "jobs", "watch", "*"),
    }
    # Then everything it asked for is granted (the test creates the Jobs through the same Roles), and storm control's grants were all used
    assert asked - (DISPATCHER_NAMESPACE_GRANTS | JOB_NAMESPACE_GRANTS) == set()
    assert storm_grants - asked == set()


async def test_when_the_wait_leader_goes_another_releases_the_rest_and_nothing_is_lost(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings, channel: Any) -> None:
    # Given two dispatchers, a limit of 2, and 20 alerts waiting
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**{"openfero.io/concurrency": "2"}), dispatchers=2)
    controller = JobController(kube_double, run_s=0.2)

    async def body() -> None:
        await storm.publish(alerts(20))
        await async_wait_for(lambda: len(controller.done) >= 4, 30, "a few Jobs done")
        # When the wait leader stops (its Lease given up, the alerts it held handed back)
        first = storm.leader()
        await first.close()
        # Then the other leads and releases the rest: every alert runs once
        await async_wait_for(lambda: len(controller.done) == 20, 60, "20 Jobs done")
        assert storm.leader() is not first
        assert await queue_depth(channel, storm.names.wait_queue) == 0

    await run_storm(storm, controller, body)
    assert len(kube_double.jobs()) == 20
    # the stated bound at a change of leader: at most the limit again, for the old leader's last releases
    assert controller.max_active <= 4, controller.max_active


async def test_waiting_alerts_that_will_be_suppressed_take_no_slot(kube_double: KubeDouble, api: client.ApiClient, broker_settings: BrokerSettings) -> None:
    # Given one Job at a time for the definition, a cool-down per pod, and slots that a released alert
    # would hold for ten minutes if its Job never came
    annotations = {"openfero.io/concurrency": "1", "openfero.io/cooldown": "1h", "openfero.io/cooldown-key": "pod"}
    storm = Storm(kube_double, api, broker_settings, storm_configmap(**annotations), dispatchers=2, transit_s=600.0)
    controller = JobController(kube_double, run_s=0.3)

    async def body() -> None:
        # When the slot is taken (web-c's Job runs on), and eleven alerts for web-a, then one for web-b, wait behind it
        controller.hold = True
        await storm.publish(alerts(1, pod="web-c"))
        await async_wait_for(lambda: len(kube_double.jobs()) == 1, 30, "web-c's Job")
        await storm.publish(alerts(11, pod="web-a") + alerts(1, pod="web-b"))
        await async_wait_for(lambda: storm.outcomes("waiting") == 13, 30, "all waiting")
        controller.hold = False
        # Then web-a's first runs, its ten others are suppressed without holding the slot, and web-b's Job runs
        await async_wait_for(lambda: len(controller.done) == 3 and storm.outcomes("suppressed") == 10, 30, "web-b's Job")

    await run_storm(storm, controller, body)
    assert sorted(j["metadata"]["annotations"]["openfero.io/cooldown-target"] for j in kube_double.jobs()) == ["pod=web-a", "pod=web-b", "pod=web-c"]
