"""The dispatcher command: wire settings, definitions and the Job sink, then consume."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import click
from aiohttp import web

from dispatcher import assembling
from dispatcher.catalog import Catalog
from dispatcher.consuming import Dispatcher
from dispatcher.handling import Handler
from dispatcher.jobs import load_api_client
from shared.metrics import metrics_handler
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
    storm = load(StormSettings)
    forbidden_accounts = kube.forbidden_accounts()
    retry = RetryPolicy.from_settings(load(RetrySettings))
    health = Health(settings.stall_s)
    # First: a second dispatcher on this host learns that its port is taken
    # before it has started anything else.
    metrics_runner = await _serve_metrics(service.metrics_addr, health)
    try:
        await _serve(broker, settings, kube, outcomes, alertmanager, storm, forbidden_accounts, retry, service, health, exit_when_idle_s)
    finally:
        await metrics_runner.cleanup()


async def _serve(
    broker: BrokerSettings,
    settings: DispatcherSettings,
    kube: KubeSettings,
    outcomes: OutcomeSettings,
    alertmanager: AlertmanagerSettings,
    storm: StormSettings,
    forbidden_accounts: frozenset[tuple[str, str]],
    retry: RetryPolicy,
    service: ServiceSettings,
    health: Health,
    exit_when_idle_s: float | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        api_client = None
        if assembling.uses_cluster(kube, settings):
            api_client, context_namespace = load_api_client(kube.request_timeout_s, settings.kube_concurrency)
            kube = resolve_namespaces(kube, context_namespace)
        catalog = assembling.definition_source(stack, kube, api_client)
        sink = assembling.job_sink(stack, api_client, settings, kube, broker, outcomes, alertmanager, storm, catalog)
        _log_configured(settings, kube, sink, forbidden_accounts)
        freeze_startup_heap()
        if sink.storm is not None:
            sink.storm.start(stop)
        if not await _wait_synced(catalog, stop) or (sink.storm is not None and not await sink.storm.synced(stop)):
            return
        if sink.tracking is not None:
            sink.tracking.start(stop)
        rules = JobRules(settings.job_ttl_s, kube.job_namespace, forbidden_accounts, track_outcomes=sink.tracking is not None)
        storm_guard = sink.storm.guard if sink.storm is not None else None
        handler = Handler(catalog, sink.jobs, rules, sink.status, sink.silences, storm_guard)
        dispatcher = Dispatcher(broker, handler, settings.prefetch, retry, settings.stall_s, log_fields=sink.log_fields)
        health.dispatcher = dispatcher
        await dispatcher.run(stop, exit_when_idle_s, service.shutdown_grace_s)


def _log_configured(settings: DispatcherSettings, kube: KubeSettings, sink: assembling.Sink, forbidden_accounts: frozenset[tuple[str, str]]) -> None:
    log.info(
        "dispatcher configured",
        extra={
            "event": "dispatcher.configured",
            "definitions_namespace": kube.definitions_namespace,
            "job_namespace": kube.job_namespace,
            "selector": kube.definition_selector,
            "dry_run": settings.dry_run,
            "track_outcomes": sink.tracking is not None,
            "alertmanagers": list(sink.alertmanagers),
            "lease": sink.tracking.lease if sink.tracking else None,
            "event_loop": running_loop_name(),
            "forbidden_service_accounts": sorted("/".join(a) for a in forbidden_accounts),
        },
    )
    if not kube.own_service_account and SERVICE_ACCOUNT_NAMESPACE_FILE.exists():  # in a cluster
        log.warning(
            "OPENFERO_DISPATCHER_SERVICE_ACCOUNT is not set: Jobs are not kept from running as the dispatcher's own account",
            extra={"event": "dispatcher.identity_unknown"},
        )


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
