"""Availability when a broker node dies (scripts/bench --faults), beside the same run without a fault.

Three RabbitMQ nodes of the benchmark's own (tests.broker_cluster) behind
a round-robin balancer; ingest, connected to the node that holds the work
queue's leader, and two dispatchers, all at production defaults; the API
double; webhooks of 5 distinct alerts every 100 ms (tests.posting). Each
scenario starts afresh (new queues, new processes) and reports:

- the longest 503 window: from sending the first refused webhook to the
  answer of the last one of a run of refusals;
- webhook latency (answers with 200) from 1 s before the fault to 10 s after
  it, and the same span of the run without a fault;
- the time to drain: from the end of posting (503s sent again, as
  Alertmanager does) until every alert has its Job;
- Jobs against alerts sent: none lost, none twice.

Never fails on timing; a lost or doubled alert is reported, not raised.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.measure import Service, _free_port, _wait_ready, machine, percentile
from shared.topology import Names, delete
from tests.broker_cluster import BrokerCluster
from tests.harness import broker_call
from tests.kube_double import KubeDouble
from tests.posting import Poster, unavailable_windows

DEFINITION = {
    "metadata": {"name": "openfero-broken-firing", "labels": {"app": "openfero"}},
    "data": {
        "Broken": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fix}\n"
        "spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: fixer}]}}}"
    },
}
DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0, 1200.0, 1800.0)  # the default tiers, to clean up


@dataclass(frozen=True)
class Scenario:
    name: str
    posting_s: float
    fault_at_s: float
    fault: str  # none, kill-leader, kill-leader-held, leader-away
    away_s: float = 0.0  # how long the node stays down (leader-away); else it is restarted once posting ends


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        return [Scenario("no fault", 8, 3, "none"), Scenario("leader killed", 8, 3, "kill-leader")]
    return [
        Scenario("no fault", 20, 5, "none"),
        *(Scenario(f"leader killed, run {i}", 20, 5, "kill-leader") for i in (1, 2, 3)),
        Scenario("leader killed, election held 2 s", 20, 5, "kill-leader-held"),
        Scenario("leader away 60 s", 75, 5, "leader-away", away_s=60),
        Scenario("no fault, 75 s", 75, 5, "none"),
    ]


def run_one(cluster: BrokerCluster, scenario: Scenario, tmp: Path) -> dict[str, Any]:
    n1, n2, n3 = cluster.nodes
    prefix = f"ofbench-{uuid.uuid4().hex[:8]}"
    names = Names(prefix)
    double = KubeDouble().start()
    double.apply("configmaps", "default", DEFINITION)
    kubeconfig = tmp / f"kubeconfig-{prefix}"
    kubeconfig.write_text(yaml.safe_dump(double.kubeconfig()))
    env = {"OPENFERO_AMQP_URL": cluster.url, "OPENFERO_QUEUE_PREFIX": prefix, "KUBECONFIG": str(kubeconfig), "OPENFERO_METRICS_ADDR": "127.0.0.1:0"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    services: list[Service] = []
    restarted_at: float | None = None
    try:
        # Ingest first, on the first node: it declares the queues, so their leaders are there too.
        with cluster.only(n1):
            ingest_log = tmp / f"ingest-{prefix}.log"
            services.append(Service("ingest", {**env, "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}"}, log=ingest_log))
            asyncio.run(_wait_ready(url))
            _until(lambda: cluster.node_of(services[0].pid) is n1, "ingest's connection")
        services += [Service("dispatcher", env) for _ in range(2)]
        leader = cluster.leader(names.work_queue)
        started = time.monotonic()
        poster = Poster(url + "/alerts").start()
        _sleep_until(started + scenario.fault_at_s)
        fault_at = time.monotonic()
        if scenario.fault in ("kill-leader", "leader-away"):
            leader.kill(wait=False)
        elif scenario.fault == "kill-leader-held":
            with cluster.election_held(cluster.others(leader)[-1], [names.work_queue], 2.0):
                leader.kill(wait=False)
        if scenario.fault == "leader-away":
            _sleep_until(fault_at + scenario.away_s)
            restarted_at = time.monotonic()
            cluster.restart(leader)
        _sleep_until(started + scenario.posting_s)
        answers = poster.stop()
        posting_ended = time.monotonic()
        # Drained with the node still away (two of three), as it would be in a cluster waiting for its pod
        resent = poster.send_refused_again(timeout_s=120)
        expected = set(poster.instances())
        _until(lambda: len(double.jobs()) >= len(expected), "every Job", timeout_s=300)
        drained = time.monotonic()
        made = [_instance(job) for job in double.jobs()]
        around = [a.latency_s for a in answers if a.status == 200 and fault_at - 1 <= a.sent <= fault_at + 10]
        windows = [end - start for start, end in unavailable_windows(answers)]
        result: dict[str, Any] = {
            "scenario": scenario.name,
            "fault": scenario.fault,
            "fault_at_s": scenario.fault_at_s,
            "leader": leader.node,
            "webhooks": len(answers),
            "alerts": len(expected),
            "refused": sum(1 for a in answers if a.status != 200),
            "sent_again": resent,
            "longest_503_window_s": max(windows, default=0.0),
            "latency_around_fault_ms": _spread(around),
            "latency_all_ms": _spread([a.latency_s for a in answers if a.status == 200]),
            "drain_s": drained - posting_ended,
            "jobs": len(made),
            "lost": len(expected - set(made)),
            "twice": len(made) - len(set(made)),
            # Whether ingest's new channel landed in the election: then the broker nacked it
            "ingest_channels_renewed_after_nack": _count(ingest_log, "broker.channel_renewed", "nacked"),
            "webhooks_stored_after_retrying": _count(ingest_log, "publish.retried"),
        }
        if restarted_at is not None and scenario.fault == "leader-away":
            back = [a.latency_s for a in answers if a.status == 200 and restarted_at - 1 <= a.sent <= restarted_at + 10]
            result["latency_around_return_ms"] = _spread(back)
        return result
    finally:
        for service in services:
            service.stop()
        double.stop()
        cluster.heal()
        broker_call(cluster.url, lambda channel: delete(channel, names, DELAYS))


def _count(log: Path, event: str, containing: str = "") -> int:
    """Log lines of ``event`` (JSON, one a line) that contain ``containing``."""
    marker = f'"event": "{event}"'
    return sum(1 for line in log.read_text(errors="replace").splitlines() if marker in line and containing in line)


def _instance(job: dict[str, Any]) -> str:
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    return env["OPENFERO_INSTANCE"]


def _spread(latencies_s: list[float]) -> dict[str, float]:
    return {
        "webhooks": len(latencies_s),
        "p50": percentile(latencies_s, 50) * 1000,
        "p99": percentile(latencies_s, 99) * 1000,
        "max": max(latencies_s, default=float("nan")) * 1000,
    }


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _until(predicate: Callable[[], Any], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_all(quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="openfero-bench-faults-"))
    cluster = BrokerCluster()
    try:
        startup = cluster.start()
        progress(f"three-node cluster started in {startup:.1f} s")
        runs = []
        for scenario in scenarios(quick):
            started = time.monotonic()
            runs.append(run_one(cluster, scenario, tmp))
            progress(f"{scenario.name}: {time.monotonic() - started:.0f} s")
        return {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": quick,
            "machine": machine(),
            "load_1m_before": os.getloadavg()[0],
            "cluster_startup_s": startup,
            "runs": runs,
        }
    finally:
        cluster.remove()


def summary(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# openfero under broker faults ({results['when']}{', quick' if results['quick'] else ''})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; RabbitMQ {m['rabbitmq']}, three nodes of the benchmark's own on this machine "
        f"(started in {results['cluster_startup_s']:.1f} s), a round-robin balancer in front. Ingest (connected to the work "
        "queue's leader) and two dispatchers at production defaults; 5-alert webhooks every 100 ms; "
        f"the fault {results['runs'][-1]['fault_at_s']:g} s in. Load average before the run: {results['load_1m_before']:.2f}.",
        "",
        "| scenario | webhooks | refused (503) | longest 503 window | latency around the fault p50 / p99 / max | "
        "whole run p99 | ingest: channels nacked and renewed / webhooks stored after retrying | drain after posting | "
        "Jobs / alerts | lost | twice |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["runs"]:
        around, whole = r["latency_around_fault_ms"], r["latency_all_ms"]
        lines.append(
            f"| {r['scenario']} | {r['webhooks']} | {r['refused']} | {r['longest_503_window_s']:.2f} s | "
            f"{around['p50']:.0f} / {around['p99']:.0f} / {around['max']:.0f} ms | {whole['p99']:.0f} ms | "
            f"{r['ingest_channels_renewed_after_nack']} / {r['webhooks_stored_after_retrying']} | {r['drain_s']:.1f} s | {r['jobs']} / {r['alerts']} | {r['lost']} | {r['twice']} |"
        )
    away = [r for r in results["runs"] if "latency_around_return_ms" in r]
    for r in away:
        back = r["latency_around_return_ms"]
        lines += ["", f"{r['scenario']}: when the node came back, webhook latency p50 {back['p50']:.0f} ms, p99 {back['p99']:.0f} ms, max {back['max']:.0f} ms."]
    lines += [
        "",
        "Latency around the fault: webhooks sent from 1 s before to 10 s after it that got 200 "
        "(for the runs without a fault, the same span of the run). The longest 503 window runs from "
        "sending the first refused webhook to the answer of the last refused one in a row.",
    ]
    return "\n".join(lines) + "\n"


def main(out: Path, quick: bool, progress: Callable[[str], None]) -> str:
    results = run_all(quick, progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = summary(results)
    (out / "faults.md").write_text(text)
    return text
