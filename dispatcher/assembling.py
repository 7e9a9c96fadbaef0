"""The dispatcher's parts, from two independent choices: where definitions come from, and where Jobs go.

The definition source is files (``OPENFERO_DEFINITIONS_PATH``) or the
cluster (a list+watch of ConfigMaps and Operarii). The Job sink is the
printer of a dry run, or the cluster: the JobCreator with what belongs to
it, the Operarius status, the Alertmanager silences before a Job and the
outcome leader after it. Each builder registers what it starts on the
caller's ``AsyncExitStack``, so that they end in the reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from dispatcher.alertmanager import Alertmanagers
from dispatcher.catalog import Catalog, load_files
from dispatcher.consuming import WORKER
from dispatcher.handling import JobSink, PrintingSink, StatusRecorder
from dispatcher.jobs import JobCreator, OperariusStatusWriter
from dispatcher.leading import LeaderElector, LeaseTimes
from dispatcher.naming import dns_label
from dispatcher.operarii import GROUP, KIND, PLURAL, VERSION
from dispatcher.reporting import EventWriter, RecordPublisher
from dispatcher.silencing import SilenceEnder, SilenceKeeper
from dispatcher.storming import StormControl
from dispatcher.tracking import OutcomeTracker
from dispatcher.watching import ResourceWatcher
from shared.broker import BrokerLink
from shared.settings import (
    SERVICE_ACCOUNT_NAMESPACE_FILE,
    AlertmanagerSettings,
    BrokerSettings,
    DispatcherSettings,
    KubeSettings,
    OutcomeSettings,
    StormSettings,
)

log = logging.getLogger("openfero.dispatcher")


def uses_cluster(kube: KubeSettings, settings: DispatcherSettings) -> bool:
    """Whether the cluster is the definition source or the Job sink: only then is its API client loaded."""
    return not kube.definitions_path or not settings.dry_run


def definition_source(stack: contextlib.AsyncExitStack, kube: KubeSettings, api_client: client.ApiClient | None) -> Catalog:
    """The catalog, read from files or fed by watches of the cluster (stopped when ``stack`` closes)."""
    catalog = Catalog()
    if kube.definitions_path:
        load_files(Path(kube.definitions_path), catalog)
        log.info("definitions read from files", extra={"event": "definitions.listed", "count": len(catalog), "path": kube.definitions_path})
        return catalog
    assert api_client is not None, "the cluster is the definition source: its client is loaded"
    for watcher in watchers(api_client, kube, catalog):
        watcher.start()
        stack.callback(watcher.stop)
    return catalog


def watchers(api_client: client.ApiClient, kube: KubeSettings, catalog: Catalog) -> list[ResourceWatcher]:
    """A list+watch of the definition ConfigMaps and of the Operarii, each feeding ``catalog``."""
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    namespace = kube.definitions_namespace
    return [
        ResourceWatcher(
            "ConfigMap",
            functools.partial(core.list_namespaced_config_map, namespace, label_selector=kube.definition_selector),
            catalog.replace_configmaps,
            catalog.apply_configmap,
            kube.watch_timeout_s,
        ),
        ResourceWatcher(
            "Operarius",
            functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL),
            catalog.replace_operarii,
            catalog.apply_operarius,
            kube.watch_timeout_s,
            served_elsewhere=functools.partial(_operarius_served_as, custom),
        ),
    ]


def _operarius_served_as(custom: client.CustomObjectsApi) -> str | None:
    """The CRD that serves kind Operarius in openfero.io when it is not ours (an older openfero's, say)."""
    try:
        resources = custom.get_api_resources(GROUP, VERSION).resources or []
    except Exception:  # no such group: nothing served under any name
        return None
    for resource in resources:
        if resource.kind == KIND and "/" not in resource.name and resource.name != PLURAL:
            return f"{resource.name}.{GROUP}"
    return None


@dataclass(frozen=True)
class Sink:
    """Where Jobs go, and what belongs to that: the handler's parts and the outcome leader's."""

    jobs: JobSink
    status: StatusRecorder | None = None  # the Operarius status, when Operarii are read from the cluster
    silences: SilenceKeeper | None = None  # the silence before a Job, for the definitions that ask
    tracking: OutcomeTracking | None = None  # the outcome leader, when outcomes are tracked
    storm: StormControl | None = None  # storm control: its Job watch, guard and wait leader
    alertmanagers: tuple[str, ...] = ()  # for the start-up line
    log_fields: Mapping[str, Any] = field(default_factory=dict)  # on every line about a message


def job_sink(
    stack: contextlib.AsyncExitStack,
    api_client: client.ApiClient | None,
    settings: DispatcherSettings,
    kube: KubeSettings,
    broker: BrokerSettings,
    outcomes: OutcomeSettings,
    alertmanager: AlertmanagerSettings,
    storm_settings: StormSettings,
    catalog: Catalog,
) -> Sink:
    """Jobs printed (a dry run: nothing else, no status, no silence, no outcome), or created through
    the API with their status, silences and outcomes, each closed when ``stack`` closes."""
    if settings.dry_run:
        return Sink(PrintingSink(), log_fields={"dry_run": True})
    assert api_client is not None, "the cluster is the Job sink: its client is loaded"
    creator = JobCreator(api_client, kube, settings.kube_concurrency)
    stack.callback(creator.close)
    status = None
    if not kube.definitions_path:  # Operarii in files have no status to write
        status = OperariusStatusWriter(api_client, kube.request_timeout_s)
        stack.callback(status.close)
    alertmanagers = Alertmanagers(alertmanager)
    stack.push_async_callback(alertmanagers.close)
    keeper = SilenceKeeper(alertmanagers, creator.annotations, kube.job_namespace, alertmanager.silence_duration_s, alertmanager.silence_margin_s)
    tracking = None
    if outcomes.track:
        tracking = OutcomeTracking(api_client, kube, broker, outcomes, catalog, status, SilenceEnder(alertmanagers))
        stack.push_async_callback(tracking.close)
    storm = StormControl(
        api_client, kube.job_namespace, _lease_namespace(kube), broker, storm_settings,
        LeaseTimes.from_settings(outcomes), kube.request_timeout_s, kube.watch_timeout_s, identity=WORKER,
    )
    stack.push_async_callback(storm.close)
    return Sink(creator, status, keeper, tracking, storm, tuple(alertmanagers.urls))


def _lease_namespace(kube: KubeSettings) -> str:
    """Where the dispatchers' Leases live: the dispatcher's own namespace, else the definitions'."""
    namespace = kube.own_namespace
    if not namespace and SERVICE_ACCOUNT_NAMESPACE_FILE.exists():
        namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    return namespace or kube.definitions_namespace


class OutcomeTracking:
    """The outcome leader's parts (dispatcher.leading, dispatcher.tracking), started once definitions are known."""

    def __init__(
        self,
        api_client: client.ApiClient,
        kube: KubeSettings,
        broker: BrokerSettings,
        outcomes: OutcomeSettings,
        catalog: Catalog,
        status: OperariusStatusWriter | None,
        silences: SilenceEnder | None = None,
    ):
        namespace = _lease_namespace(kube)
        lease = dns_label(f"{broker.queue_prefix}-outcomes")
        self.link = BrokerLink(broker)
        self.elector = LeaderElector(api_client, namespace, lease, WORKER, LeaseTimes.from_settings(outcomes), kube.request_timeout_s)
        events = None if kube.definitions_path else EventWriter(api_client, WORKER, kube.request_timeout_s)
        self.tracker = OutcomeTracker(
            api_client,
            kube.job_namespace,
            catalog,
            RecordPublisher(self.link),
            WORKER,
            status=status,
            events=events,
            timeout_s=kube.request_timeout_s,
            watch_timeout_s=kube.watch_timeout_s,
            silences=silences,
        )
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.lease = f"{namespace}/{lease}"

    def start(self, process_stop: asyncio.Event) -> None:
        async def stop_with_the_process() -> None:
            # On SIGTERM the Lease is given up and the steps under way end while the
            # dispatcher drains its messages, not after: a successor starts at once.
            await process_stop.wait()
            self.stop.set()

        self.tasks = [
            asyncio.create_task(self.link.run(), name="outcome-broker-link"),
            asyncio.create_task(self.elector.run(self.stop), name="outcome-leader"),
            asyncio.create_task(self.tracker.run(self.elector, self.stop), name="outcome-tracker"),
            asyncio.create_task(stop_with_the_process(), name="outcome-stop"),
        ]

    async def close(self) -> None:
        self.stop.set()
        if self.tasks:
            # The tracker finishes the steps under way, the elector gives the Lease up.
            await asyncio.wait(self.tasks[1:3], timeout=15)
        await self.link.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
