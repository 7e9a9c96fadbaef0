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
from dispatcher.operarii import GROUP, PLURAL, VERSION
from dispatcher.watching import ResourceWatcher
from shared.metrics import metrics_handler
from dispatcher.handling import Handler, JobSink, PrintingSink
from dispatcher.retrying import RetryPolicy
from shared import logs
from shared.loop import loop_factory, running_loop_name
from shared.settings import (
    BrokerSettings,
    DispatcherSettings,
    KubeSettings,
    RetrySettings,
    ServiceSettings,
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
        ),
    ]


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
    retry = RetryPolicy.from_settings(load(RetrySettings))
    health = Health(settings.stall_s)
    # First: a second dispatcher on this host learns that its port is taken
    # before it has started anything else.
    metrics_runner = await _serve_metrics(service.metrics_addr, health)
    try:
        await _serve(broker, settings, kube, retry, service, health, exit_when_idle_s)
    finally:
        await metrics_runner.cleanup()


async def _serve(
    broker: BrokerSettings,
    settings: DispatcherSettings,
    kube: KubeSettings,
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
                status = OperariusStatusWriter(api_client, catalog)
                closers.append(status.close)
        log.info(
            "dispatcher configured",
            extra={
                "event": "dispatcher.configured",
                "definitions_namespace": kube.definitions_namespace,
                "job_namespace": kube.job_namespace,
                "selector": kube.definition_selector,
                "dry_run": settings.dry_run,
                "event_loop": running_loop_name(),
            },
        )
    try:
        if await _wait_synced(catalog, stop):
            handler = Handler(catalog, sink, settings.job_ttl_s, status)
            dispatcher = Dispatcher(broker, handler, settings.prefetch, retry, settings.stall_s)
            health.dispatcher = dispatcher
            await dispatcher.run(stop, exit_when_idle_s, service.shutdown_grace_s)
    finally:
        for close in closers:
            close()


async def _serve_metrics(addr: str, health: Health) -> web.AppRunner:
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
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        await runner.cleanup()
        raise SettingsError(f"OPENFERO_METRICS_ADDR={addr!r}: expected host:port")
    try:
        await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    except OSError as exc:  # in use (a second dispatcher on this host), not ours to take, an unknown host
        await runner.cleanup()
        raise SettingsError(f"OPENFERO_METRICS_ADDR={addr}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1]
    log.info("metrics served", extra={"event": "metrics.listening", "port": bound})
    return runner


@click.command(
    "dispatcher",
    epilog=help_epilog(BrokerSettings, KubeSettings, DispatcherSettings, RetrySettings, ServiceSettings),
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
