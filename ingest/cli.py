"""The ingest command: settings from the environment, then serve until SIGTERM."""

from __future__ import annotations

import click
from aiohttp import web

from ingest.app import create_app
from shared import logs
from shared.settings import BrokerSettings, IngestSettings, LogSettings, help_epilog, load

# In-flight requests get this long to finish after SIGTERM; below Kubernetes'
# default grace period of 30 s.
SHUTDOWN_GRACE_S = 20.0


@click.command(
    "ingest",
    epilog=help_epilog(BrokerSettings, IngestSettings, LogSettings),
    context_settings={"max_content_width": 100},
)
def command() -> None:
    """Receive Alertmanager webhooks and queue one message per alert."""
    logs.setup(load(LogSettings).level)
    ingest = load(IngestSettings)
    app = create_app(load(BrokerSettings), ingest)
    web.run_app(
        app,
        host=ingest.host,
        port=ingest.port,
        shutdown_timeout=SHUTDOWN_GRACE_S,
        print=None,
        access_log=None,
    )


def main() -> None:
    command(prog_name="python -m ingest")
