"""The ingest command: settings from the environment, then serve until SIGTERM."""

from __future__ import annotations

import ssl

import click
from aiohttp import web

from ingest.app import create_app
from shared import logs
from shared.loop import freeze_startup_heap, loop_factory
from shared.settings import BrokerSettings, IngestSettings, ServiceSettings, SettingsError, help_epilog, load


@click.command(
    "ingest",
    epilog=help_epilog(BrokerSettings, IngestSettings, ServiceSettings),
    context_settings={"max_content_width": 100},
)
def command() -> None:
    """Receive Alertmanager webhooks and queue one message per alert."""
    try:
        service = load(ServiceSettings)
        ingest = load(IngestSettings)
        app = create_app(load(BrokerSettings), ingest)
        tls = _tls_context(ingest)
        loop = loop_factory(service.event_loop)()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logs.setup(service.log_level, service.log_format)
    freeze_startup_heap()
    web.run_app(
        app,
        host=ingest.host,
        port=ingest.port,
        ssl_context=tls,
        shutdown_timeout=service.shutdown_grace_s,
        print=None,
        access_log=None,
        loop=loop,
    )


def _tls_context(ingest: IngestSettings) -> ssl.SSLContext | None:
    if not ingest.tls_cert_file and not ingest.tls_key_file:
        return None
    if not (ingest.tls_cert_file and ingest.tls_key_file):
        raise SettingsError("TLS needs both OPENFERO_TLS_CERT_FILE and OPENFERO_TLS_KEY_FILE")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(ingest.tls_cert_file, ingest.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"TLS certificate or key: {exc}") from None
    return context


def main() -> None:
    command(prog_name="python -m ingest")
