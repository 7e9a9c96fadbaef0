"""The ingest command: settings from the environment, then serve until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl

import click
from aiohttp import web

from ingest.app import GUARD, create_app
from ingest.connections import GuardedSite
from shared import logs
from shared.loop import freeze_startup_heap, loop_factory
from shared.settings import BrokerSettings, IngestSettings, ServiceSettings, SettingsError, help_epilog, load
from shared.tls import server_context


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
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(app, ingest, service, tls))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def serve(app: web.Application, ingest: IngestSettings, service: ServiceSettings, tls: ssl.SSLContext | None) -> None:
    """Serve ``app`` behind its connection guard until SIGTERM or SIGINT, then stop gracefully.

    On a signal: stop accepting, let the requests in flight finish for
    OPENFERO_SHUTDOWN_GRACE_SECONDS, then close.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # 75 s keep-alive, as aiohttp's run_app: idle connections between webhooks.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=75.0, shutdown_timeout=service.shutdown_grace_s)
    await runner.setup()
    try:
        site = GuardedSite(runner, app[GUARD], ingest.addr.host, ingest.addr.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:  # in use, not ours to take, an unknown host
            raise SettingsError(f"OPENFERO_INGEST_ADDR={ingest.addr}: {exc.strerror or exc}") from None
        await stop.wait()
    finally:
        await runner.cleanup()


def _tls_context(ingest: IngestSettings) -> ssl.SSLContext | None:
    return server_context(ingest.tls_cert_file, ingest.tls_key_file, "OPENFERO_TLS_CERT_FILE", "OPENFERO_TLS_KEY_FILE")


def main() -> None:
    command(prog_name="python -m ingest")
