"""The dispatcher command: wire settings, definitions and the Job sink, then consume."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from dispatcher.consuming import Dispatcher
from dispatcher.catalog import Catalog, load_files
from dispatcher.operarii import GROUP, KIND, PLURAL, VERSION
from dispatcher.watching import ResourceWatcher
from shared.metrics import metrics_handler
from dispatcher.handling import Handler, JobSink, PrintingSink
from dispatcher.rendering import JobRules
from dispatcher.retrying import RetryPolicy
from shared import logs
from shared.loop import freeze_startup_heap, loop_factory, running_loop_name
from shared.settings import (
    AlertmanagerSettings,
    HostPort,
    BrokerSettings,
    DispatcherSettings,
    KubeSettings,
    OutcomeSettings,
    SERVICE_ACCOUNT_NAMESPACE_FILE,
    RetrySettings,
    ServiceSettings,
    StormSettings,
    SettingsError,
    help_epilog,
    load,
    resolve_namespaces,
)

log = logging.getLogger("openfero.dispatcher")


async def _wait_synced(catalog: Catalog, stop: asyncio.Event) -> bool:
    """Consume nothing before the definitions are known: an alert must not meet an empty catalog."""
    while not catalog.synced:
        if stop.is_set():
            return False
        await asyncio.sleep(0.05)
    return True


def _watchers(api_client: Any, kube: KubeSettings, catalog: Catalog) -> list[ResourceWatcher]:
    from kubernetes import client

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


def _operarius_served_as(custom: Any) -> str | None:
    """The CRD that serves kind Operarius in openfero.io when it is not ours (an older openfero's, say)."""
    try:
        resources = custom.get_api_resources(GROUP, VERSION).resources or []
    except Exception:  # no such group: nothing served under any name
        return None
    for resource in resources:
        if resource.kind == KIND and "/" not in resource.name and resource.name != PLURAL:
            return f"{resource.name}.{GROUP}"
    return None


class OutcomeTracking:
    """The outcome leader's parts (dispatcher.leading, dispatcher.tracking), started once definitions are known."""

    def __init__(self, api_client: Any, kube: KubeSettings, broker: BrokerSettings, outcomes: OutcomeSettings, catalog: Catalog, status: Any, silences: Any = None):
        from dispatcher.consuming import WORKER
        from dispatcher.leading import LeaderElector, LeaseTimes
        from dispatcher.naming import dns_label
        from dispatcher.reporting import EventWriter, RecordPublisher
        from dispatcher.tracking import OutcomeTracker
        from shared.broker import BrokerLink

        namespace = kube.own_namespace
        if not namespace and SERVICE_ACCOUNT_NAMESPACE_FILE.exists():
            namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
        namespace = namespace or kube.definitions_namespace
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


class Health:
    """What /healthz (liveness) and /readiness answer; see dispatcher.liveness for the rule."""

    def __init__(self, stall_s: float):
        self.stall_s = stall_s
        self.dispatcher: Dispatcher | None = None

    def stuck(self) -> str | None:
        if self.dispatcher is None:
            return None
        return self.dispatcher.progress.stuck(time.monotonic(), self.stall_s)

    def not_ready(self) -> str | None:
        if self.dispatcher is None:
            return "definitions not loaded yet: consuming nothing (see definitions.error in the log if the API refuses)"
        if not self.dispatcher.link.ready.is_set():
            return "not connected to the broker"
        return self.stuck()


async def serve(service: ServiceSettings, dry_run: bool | None, exit_when_idle_s: float | None) -> None:
    broker = load(BrokerSettings)
    settings = load(DispatcherSettings, dry_run=dry_run)
    kube = load(KubeSettings)
    outcomes = load(OutcomeSettings)
    alertmanager = load(AlertmanagerSettings)
    forbidden_accounts = kube.forbidden_accounts()
    retry = RetryPolicy.from_settings(load(RetrySettings))
    health = Health(settings.stall_s)
    # First: a second dispatcher on this host learns that its port is taken
    # before it has started anything else.
    metrics_runner = await _serve_metrics(service.metrics_addr, health)
    try:
        await _serve(broker, settings, kube, outcomes, alertmanager, forbidden_accounts, retry, service, health, exit_when_idle_s)
    finally:
        await metrics_runner.cleanup()


async def _serve(
    broker: BrokerSettings,
    settings: DispatcherSettings,
    kube: KubeSettings,
    outcomes: OutcomeSettings,
    alertmanager: AlertmanagerSettings,
    forbidden_accounts: frozenset[tuple[str, str]],
    retry: RetryPolicy,
    service: ServiceSettings,
    health: Health,
    exit_when_idle_s: float | None,
) -> None:
    catalog = Catalog()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    sink: JobSink = PrintingSink()
    status = None
    tracking: OutcomeTracking | None = None
    keeper = None
    alertmanagers = None
    storm = None
    closers: list[Any] = []
    if kube.definitions_path and settings.dry_run:
        load_files(Path(kube.definitions_path), catalog)
        log.info(
            "definitions read from files",
            extra={"event": "definitions.listed", "count": len(catalog), "path": kube.definitions_path},
        )
    else:
        from dispatcher.jobs import JobCreator, OperariusStatusWriter, load_api_client

        api_client, context_namespace = load_api_client(kube.request_timeout_s, settings.kube_concurrency)
        kube = resolve_namespaces(kube, context_namespace)
        if kube.definitions_path:
            load_files(Path(kube.definitions_path), catalog)
        else:
            for watcher in _watchers(api_client, kube, catalog):
                watcher.start()
                closers.append(watcher.stop)
        if not settings.dry_run:
            creator = JobCreator(api_client, kube, settings.kube_concurrency)
            sink = creator
            closers.append(creator.close)
            if not kube.definitions_path:
                status = OperariusStatusWriter(api_client, kube.request_timeout_s)
                closers.append(status.close)
            from dispatcher.alertmanager import Alertmanagers
            from dispatcher.silencing import SilenceEnder, SilenceKeeper

            alertmanagers = Alertmanagers(alertmanager)
            keeper = SilenceKeeper(
                alertmanagers, creator.annotations, kube.job_namespace, alertmanager.silence_duration_s, alertmanager.silence_margin_s
            )
            if outcomes.track:
                tracking = OutcomeTracking(api_client, kube, broker, outcomes, catalog, status, SilenceEnder(alertmanagers))
            # -- storm control (dispatcher.storming): its Job watch, guard and wait leader --------
            from dispatcher.storming import StormControl

            storm = StormControl.for_dispatcher(api_client, kube, broker, outcomes, load(StormSettings))
            # -- end of storm control ------------------------------------------------------------
        log.info(
            "dispatcher configured",
            extra={
                "event": "dispatcher.configured",
                "definitions_namespace": kube.definitions_namespace,
                "job_namespace": kube.job_namespace,
                "selector": kube.definition_selector,
                "dry_run": settings.dry_run,
                "track_outcomes": tracking is not None,
                "alertmanagers": list(alertmanagers.urls) if alertmanagers else [],
                "lease": tracking.lease if tracking else None,
                "event_loop": running_loop_name(),
                "forbidden_service_accounts": sorted("/".join(a) for a in forbidden_accounts),
            },
        )
        if not kube.own_service_account and SERVICE_ACCOUNT_NAMESPACE_FILE.exists():  # in a cluster
            log.warning(
                "OPENFERO_DISPATCHER_SERVICE_ACCOUNT is not set: Jobs are not kept from running as the dispatcher's own account",
                extra={"event": "dispatcher.identity_unknown"},
            )
    freeze_startup_heap()
    try:
        if storm is not None:
            storm.start(stop)
        if await _wait_synced(catalog, stop) and (storm is None or await storm.synced(stop)):
            if tracking is not None:
                tracking.start(stop)
            rules = JobRules(settings.job_ttl_s, kube.job_namespace, forbidden_accounts, track_outcomes=tracking is not None)
            handler = Handler(catalog, sink, rules, status, keeper, storm.guard if storm is not None else None)
            dispatcher = Dispatcher(broker, handler, settings.prefetch, retry, settings.stall_s)
            health.dispatcher = dispatcher
            await dispatcher.run(stop, exit_when_idle_s, service.shutdown_grace_s)
    finally:
        if tracking is not None:
            await tracking.close()
        if storm is not None:
            await storm.close()
        if alertmanagers is not None:
            await alertmanagers.close()
        for close in closers:
            close()


async def _serve_metrics(addr: HostPort, health: Health) -> web.AppRunner:
    """/metrics, /healthz and /readiness on their own port: the dispatcher has no other HTTP.

    /healthz is liveness: 503 only when the consumer is stuck. /readiness is
    503 also while the dispatcher holds back on purpose, saying why.
    """

    async def healthz(request: web.Request) -> web.Response:
        stuck = health.stuck()
        if stuck is not None:
            return web.json_response({"error": f"stuck: {stuck}", "status": 503}, status=503)
        return web.json_response({"status": "ok"})

    async def readiness(request: web.Request) -> web.Response:
        why = health.not_ready()
        if why is not None:
            return web.json_response({"error": why, "status": 503}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readiness", readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, addr.host, addr.port).start()
    except OSError as exc:  # in use (a second dispatcher on this host), not ours to take, an unknown host
        await runner.cleanup()
        raise SettingsError(f"OPENFERO_METRICS_ADDR={addr}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1]
    log.info("metrics served", extra={"event": "metrics.listening", "port": bound})
    return runner


@click.command(
    "dispatcher",
    epilog=help_epilog(BrokerSettings, KubeSettings, DispatcherSettings, OutcomeSettings, AlertmanagerSettings, StormSettings, RetrySettings, ServiceSettings),
    context_settings={"max_content_width": 100},
)
@click.option("--dry-run", is_flag=True, default=None, help="Print Jobs as YAML instead of creating them.")
@click.option(
    "--exit-when-idle",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Drain the work queue, then exit once it has been empty this long.",
)
def command(dry_run: bool | None, exit_when_idle: float | None) -> None:
    """Consume alert messages and create the Kubernetes Jobs their definitions describe."""
    try:
        service = load(ServiceSettings)
        new_loop = loop_factory(service.event_loop)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logs.setup(service.log_level, service.log_format)
    with asyncio.Runner(loop_factory=new_loop) as runner:
        try:
            runner.run(serve(service, dry_run, exit_when_idle))
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None


def main() -> None:
    command(prog_name="python -m dispatcher")
