"""A storm in one process: dispatchers with their guards, the wait leader, the real broker and the
API double, with a test playing the Job controller (tests of storm control and its benchmark)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import yaml
from kubernetes import client

from dispatcher.catalog import Catalog
from dispatcher.consuming import Dispatcher
from dispatcher.handling import Handler
from dispatcher.jobs import JobCreator
from dispatcher.leading import LeaseTimes
from dispatcher.rendering import JobRules
from dispatcher.retrying import RetryPolicy
from dispatcher.storming import StormControl
from shared.envelope import Envelope, envelopes_from_webhook
from shared.settings import BrokerSettings, KubeSettings, StormSettings
from shared.topology import ALERT_ROUTING_KEY, Names, declare
from tests.kube_double import KubeDouble

DELAYS = (0.2, 0.5, 1.0)
ALERTNAME = "KubePodCrashLooping"


def storm_configmap(**annotations: str) -> dict[str, Any]:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "restart-pod"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "fix", "image": "fixer:1"}]}}},
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"openfero-{ALERTNAME.lower()}-firing", "labels": {"app": "openfero"}, "annotations": annotations},
        "data": {ALERTNAME: yaml.safe_dump(job)},
    }


def alerts(count: int, **labels: str) -> list[Envelope]:
    """``count`` alerts of one definition, each a pod of its own (unless ``labels`` says which)."""
    base = datetime.now(timezone.utc)
    return [
        envelope
        for i in range(count)
        # One webhook each, received a millisecond apart: each has an age of its own
        for envelope in envelopes_from_webhook(
            {"alerts": [{"labels": {"alertname": ALERTNAME, "namespace": "shop", "pod": f"web-{i}", **labels, "n": str(i)}, "startsAt": "2026-01-01T00:00:00Z"}]},
            now=base + timedelta(milliseconds=i),
        )
    ]


def ended(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in (job.get("status") or {}).get("conditions") or [])


@dataclass
class JobController:
    """Plays Kubernetes' Job controller: each new Job starts, then ends ``run_s`` later (fails when ``fails`` says)."""

    kube: KubeDouble
    run_s: float = 0.2
    fails: Any = None  # job name -> True to fail it
    started: dict[str, float] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    max_active: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds from start, active Jobs)
    hold: bool = False  # while True, Jobs start but do not end

    async def run(self, stop: asyncio.Event) -> None:
        began = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            jobs = self.kube.jobs()
            active = sum(1 for j in jobs if not ended(j) and not j["metadata"].get("deletionTimestamp"))
            self.max_active = max(self.max_active, active)
            self.samples.append((now - began, active))
            for job in jobs:
                name = job["metadata"]["name"]
                if name not in self.started:
                    self.started[name] = now
                    self.kube.job_started(name)
                elif name not in self.done and not self.hold and now - self.started[name] >= self.run_s:
                    self.done.add(name)
                    if self.fails is not None and self.fails(name):
                        self.kube.job_failed(name)
                    else:
                        self.kube.job_succeeded(name)
            await asyncio.sleep(0.02)


class Storm:
    """``dispatchers`` dispatchers of one installation, each with its storm control as the dispatcher command assembles it."""

    def __init__(self, kube: KubeDouble, api: client.ApiClient, broker: BrokerSettings, configmap: dict[str, Any], dispatchers: int = 1, prefetch: int = 8, global_per_window: int | None = None, window_s: float = 60.0, transit_s: float = 10.0):
        self.kube = kube
        self.api = api
        self.broker = broker
        self.names = Names(broker.queue_prefix)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.closers: list[Any] = []
        self.parts: list[dict[str, Any]] = []
        kube.apply("configmaps", "default", configmap)
        settings = StormSettings(global_jobs_per_minute=global_per_window or 0, transit_s=transit_s)
        for i in range(dispatchers):
            catalog = Catalog()
            catalog.replace_configmaps([kube.get("configmaps", "default", configmap["metadata"]["name"])])
            catalog.replace_operarii([])
            control = StormControl(api, "default", "default", broker, settings, LeaseTimes(2, 1.5, 0.2), 2.0, 30, identity=f"dispatcher-{i}", tick_s=0.2, window_s=window_s)
            creator = JobCreator(api, KubeSettings(job_namespace="default", request_timeout_s=5), concurrency=8)
            handler = Handler(catalog, creator, JobRules(600, "default"), storm=control.guard)
            dispatcher = Dispatcher(broker, handler, prefetch, RetryPolicy(DELAYS, max_attempts=4, operator_min_delay_s=0.0))
            self.parts.append({"control": control, "book": control.book, "dispatcher": dispatcher, "elector": control.elector})
            self.closers.append(creator.close)

    async def start(self) -> None:
        for part in self.parts:
            part["control"].start(self.stop)
        for part in self.parts:
            await asyncio.wait_for(part["control"].synced(self.stop), 10)
            self.tasks.append(asyncio.create_task(part["dispatcher"].run(self.stop, grace_s=5)))

    def leader(self) -> StormControl:
        [leading] = [p["control"] for p in self.parts if p["elector"].leading.is_set()]
        return leading

    async def publish(self, envelopes: list[Envelope]) -> None:
        connection = await aio_pika.connect(self.broker.amqp_url)
        try:
            channel = await connection.channel()
            await declare(connection, channel, self.names, DELAYS)
            exchange = await channel.get_exchange(self.names.exchange)
            for envelope in envelopes:
                await exchange.publish(aio_pika.Message(envelope.to_json(), message_id=envelope.id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=ALERT_ROUTING_KEY)
        finally:
            await connection.close()

    def outcomes(self, kind: str) -> int:
        return sum(part["dispatcher"].outcomes[kind] for part in self.parts)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait(self.tasks, timeout=15)
        for part in self.parts:
            await part["control"].close()
        for close in self.closers:
            close()
