"""The ingest command: settings from the environment, then serve until SIGTERM."""

from __future__ import annotations

import click
from aiohttp import web

from ingest.app import create_app
from shared import logs
from shared.settings import BrokerSettings, IngestSettings, ServiceSettings, help_epilog, load


@click.command(
    "ingest",
    epilog=help_epilog(BrokerSettings, IngestSettings, ServiceSettings),
    context_settings={"max_content_width": 100},
)
def command() -> None:
    """Receive Alertmanager webhooks and queue one message per alert."""
    service = load(ServiceSettings)
    logs.setup(service.log_level)
    ingest = load(IngestSettings)
    app = create_app(load(BrokerSettings), ingest)
    web.run_app(
        app,
        host=ingest.host,
        port=ingest.port,
        shutdown_timeout=service.shutdown_grace_s,
        print=None,
        access_log=None,
    )


def main() -> None:
    command(prog_name="python -m ingest")
