"""A stuck dispatcher is not healthy; one that holds back on purpose is, but not ready."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from dispatcher.liveness import Progress
from tests.conftest import reference_alert_bytes, reference_configmap, wait_for
from tests.harness import Pipeline, Process, queue_depths

STALL_S = 2.0


def test_a_consumer_that_holds_messages_and_settles_none_is_stuck() -> None:
    progress = Progress()
    progress.consuming(now=100.0)
    progress.delivered(1, now=101.0)
    assert progress.stuck(now=102.0, stall_s=STALL_S) is None
    assert progress.stuck(now=103.5, stall_s=STALL_S) == "holds 1 messages and has settled none for 2 s"
    progress.settled(1, now=104.0)
    assert progress.stuck(now=105.0, stall_s=STALL_S) is None


def test_a_consumer_that_is_handed_nothing_while_messages_wait_is_stuck() -> None:
    progress = Progress()
    progress.consuming(now=100.0)
    progress.waiting = 5
    assert progress.stuck(now=101.0, stall_s=STALL_S) is None
    assert "5 messages wait in the work queue" in (progress.stuck(now=103.0, stall_s=STALL_S) or "")
    progress.delivered(7, now=103.0)  # it is being handed messages again
    assert progress.stuck(now=103.5, stall_s=STALL_S) is None


def test_an_idle_consumer_and_one_that_does_not_consume_are_not_stuck() -> None:
    progress = Progress()
    assert progress.stuck(now=1000.0, stall_s=STALL_S) is None  # holding back: not consuming at all
    progress.consuming(now=100.0)
    assert progress.stuck(now=1000.0, stall_s=STALL_S) is None  # nothing held, nothing waiting
    progress.delivered(1, now=1001.0)
    progress.stopped()  # the connection went, and what it held with it
    assert progress.stuck(now=2000.0, stall_s=STALL_S) is None


def _answer(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _probes(dispatcher: Process) -> str:
    [listening] = wait_for(lambda: dispatcher.events("metrics.listening"), what="the metrics port")
    return f"http://127.0.0.1:{listening['port']}"


@pytest.mark.e2e
def test_a_dispatcher_whose_consumer_stops_settling_fails_its_liveness_probe(processes, double_env, tmp_path, kube_double) -> None:
    # Given a dispatcher whose Job creates hang (past its own timeout, made long here)
    kube_double.apply("configmaps", "default", reference_configmap())
    env = {**double_env, "OPENFERO_STALL_SECONDS": str(STALL_S), "OPENFERO_KUBE_TIMEOUT_SECONDS": "60", "OPENFERO_SHUTDOWN_GRACE_SECONDS": "1"}
    pipeline = Pipeline(processes, env, tmp_path)
    probes = _probes(pipeline.dispatcher)
    assert _answer(probes + "/healthz")[0] == 200
    wait_for(lambda: _answer(probes + "/readiness")[0] == 200, what="ready")
    kube_double.add_fault("POST", r"/jobs$", status=0, delay_s=15)
    # When an alert arrives and its message is never settled
    assert pipeline.post(reference_alert_bytes())[0] == 200
    # Then liveness fails, saying why, once the stall has lasted
    status, answer = wait_for(lambda: (r := _answer(probes + "/healthz"))[0] == 503 and r, timeout_s=20, what="/healthz 503")
    assert "stuck: holds 1 messages and has settled none" in answer["error"]
    assert _answer(probes + "/readiness")[0] == 503


@pytest.mark.e2e
def test_a_dispatcher_that_may_not_read_its_definitions_is_alive_but_not_ready(processes, double_env, tmp_path, kube_double, amqp_url, prefix) -> None:
    # Given RBAC that forbids reading Operarii, and an alert waiting
    kube_double.apply("configmaps", "default", reference_configmap())
    kube_double.add_fault("GET", r"/operariuses$", status=403)
    pipeline = Pipeline(processes, {**double_env, "OPENFERO_STALL_SECONDS": str(STALL_S)}, tmp_path, dispatchers=0)
    dispatcher = pipeline.start_dispatcher(wait=False)
    probes = _probes(dispatcher)
    assert pipeline.post(reference_alert_bytes())[0] == 200
    wait_for(lambda: any(e.get("http_status") == 403 for e in dispatcher.events("definitions.error")), what="the 403 logged")
    # Then, for longer than a stall, it is alive (no restart loop) but not ready, saying why
    for _ in range(3):
        assert _answer(probes + "/healthz")[0] == 200
        status, answer = _answer(probes + "/readiness")
        assert status == 503 and "definitions not loaded yet" in answer["error"]
        time.sleep(STALL_S)
    assert queue_depths(amqp_url, prefix)["work"] == 1
    # and once RBAC is fixed it is ready and handles the alert
    kube_double.clear_faults()
    wait_for(kube_double.jobs, timeout_s=30, what="the Job after the fix")
    assert _answer(probes + "/readiness")[0] == 200 and _answer(probes + "/healthz")[0] == 200
