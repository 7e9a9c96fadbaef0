"""openfero <subcommand>: a thin layer over the services' own commands."""

from __future__ import annotations

import click

from console.cli import command as console_command
from dispatcher.cli import command as dispatcher_command
from ingest.cli import command as ingest_command
from openfero.authoring import render_command, validate_command
from openfero.doctor import doctor
from openfero.history import history
from openfero.definitions import definitions
from openfero.operations import dlq, parked, replay


@click.group(context_settings={"max_content_width": 100})
@click.version_option(package_name="openfero")
def main() -> None:
    """openfero: Alertmanager alerts become Kubernetes Jobs, durably."""


main.add_command(ingest_command)
main.add_command(dispatcher_command)
main.add_command(dlq)
main.add_command(replay)
main.add_command(render_command)
main.add_command(validate_command)
main.add_command(doctor)
main.add_command(console_command)
main.add_command(history)
main.add_command(definitions)
main.add_command(parked)
