"""The console command: settings from the environment, the cluster if there is one, then serve until SIGTERM."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import click
from aiohttp import web

from console.app import create_app, create_console
from dispatcher.rendering import JobRules
from openfero.doctor import ManagementApi
from shared import logs
from shared.loop import freeze_startup_heap, loop_factory
from shared.settings import (
    BrokerSettings,
    ConsoleSettings,
    DispatcherSettings,
    KubeSettings,
    ManagementSettings,
    RetrySettings,
    ServiceSettings,
    SettingsError,
    help_epilog,
    load,
    resolve_namespaces,
)
from shared.tls import server_context

log = logging.getLogger("openfero.console")


def _api_client(kube: KubeSettings) -> tuple[Any, KubeSettings]:
    """The cluster's client and the namespaces filled in; no client when no cluster is configured."""
    from kubernetes.config.config_exception import ConfigException

    from dispatcher.jobs import load_api_client

    try:
        client, namespace = load_api_client(kube.request_timeout_s, connections=8)
    except (ConfigException, OSError, TypeError) as exc:
        log.info("no cluster configured: %s", exc, extra={"event": "console.no_cluster"})
        return None, resolve_namespaces(kube, None)
    return client, resolve_namespaces(kube, namespace)


def tls_context(settings: ConsoleSettings) -> ssl.SSLContext | None:
    """HTTPS as ingest serves it."""
    return server_context(settings.tls_cert_file, settings.tls_key_file, "OPENFERO_CONSOLE_TLS_CERT_FILE", "OPENFERO_CONSOLE_TLS_KEY_FILE")


@click.command(
    "console",
    epilog=help_epilog(ConsoleSettings, BrokerSettings, ManagementSettings, KubeSettings, ServiceSettings),
    context_settings={"max_content_width": 100},
)
def command() -> None:
    """Serve the operator's console: alerts, their Jobs and outcomes, definitions, dead letters, health."""
    try:
        service = load(ServiceSettings)
        settings = load(ConsoleSettings)
        broker = load(BrokerSettings)
        kube = load(KubeSettings)
        management = ManagementApi.from_settings(broker, load(ManagementSettings))
        dispatcher = load(DispatcherSettings)
        delays = load(RetrySettings).delays_s
        tls = tls_context(settings)
        loop = loop_factory(service.event_loop)()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logs.setup(service.log_level, service.log_format)
    # The definitions' watcher speaks of every Job it hears of: the dispatchers log definitions already.
    logging.getLogger("openfero.definitions").setLevel(max(logging.WARNING, logging.getLogger().level))
    api_client, kube = _api_client(kube)
    try:
        rules = JobRules(dispatcher.job_ttl_s, kube.job_namespace, kube.forbidden_accounts())
        console = create_console(settings, broker, kube, rules, management, delays, api_client)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    app = create_app(console)
    freeze_startup_heap()
    web.run_app(
        app,
        host=settings.addr.host,
        port=settings.addr.port,
        ssl_context=tls,
        shutdown_timeout=service.shutdown_grace_s,
        keepalive_timeout=settings.keepalive_timeout_s,
        print=None,
        access_log=None,
        loop=loop,
    )


def main() -> None:
    command(prog_name="python -m console")
