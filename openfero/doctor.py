"""`openfero doctor`: are openfero's queues replicated as wanted, and every node running?

Reads RabbitMQ's management HTTP API (OPENFERO_MANAGEMENT_URL and its
credentials, by default those of OPENFERO_AMQP_URL on port 15672), judges
with ``openfero.health`` and prints a table, the findings and the commands
that mend them. Exit codes: 0 all well, 1 a finding or the API could not
be read, 2 wrong usage.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from openfero.health import Health, assess
from shared.settings import BrokerSettings, ManagementSettings, SettingsError, help_epilog, load
from shared.topology import Names

EPILOG = help_epilog(BrokerSettings, ManagementSettings)
_TIMEOUT_S = 10.0


class ManagementError(Exception):
    """The management API could not be read."""


class ManagementApi:
    """The few read-only calls of RabbitMQ's management HTTP API that the doctor makes."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    @classmethod
    def from_settings(cls, broker: BrokerSettings, management: ManagementSettings) -> ManagementApi:
        amqp = urllib.parse.urlsplit(broker.amqp_url)
        url = management.url or f"http://{amqp.hostname or '127.0.0.1'}:15672"
        username = management.username or urllib.parse.unquote(amqp.username or "") or "guest"
        if management.password_file:
            try:
                password = Path(management.password_file).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"OPENFERO_MANAGEMENT_PASSWORD_FILE: {exc}") from None
        else:
            password = management.password or urllib.parse.unquote(amqp.password or "") or "guest"
        return cls(url, username, password)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ManagementError(f"{self.url}{path}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise ManagementError(f"{self.url}{path}: {exc}") from None

    def nodes(self) -> dict[str, bool]:
        return {n["name"]: bool(n.get("running")) for n in self.get("/api/nodes")}

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        columns = "name,type,node,leader,members,online"
        queues: list[dict[str, Any]] = self.get(f"/api/queues/{urllib.parse.quote(vhost, safe='')}?columns={columns}")
        return queues


def vhost_of(amqp_url: str) -> str:
    """The virtual host of an AMQP URL: its path, percent-decoded; "/" when there is none."""
    path = urllib.parse.urlsplit(amqp_url).path
    return "/" if path in ("", "/") else urllib.parse.unquote(path[1:])


def render(health: Health) -> str:
    rows = [("QUEUE", "TYPE", "MEMBERS", "WANTED", "ONLINE", "LEADER", "STATUS")]
    for q in health.queues:
        rows.append((q.name, q.kind, str(len(q.members)), str(q.wanted), str(len(q.online)), q.leader or "-", q.status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    running = [n for n, up in sorted(health.nodes.items()) if up]
    lines += ["", f"nodes: {len(running)} of {len(health.nodes)} running: " + ", ".join(
        n if up else f"{n} (not running)" for n, up in sorted(health.nodes.items())
    )]
    if health.ok:
        lines += ["", "all well"]
        return "\n".join(lines)
    lines += ["", "problems:"] + [f"  {p}" for p in health.problems]
    fixes = [(q.name, f) for q in health.queues for f in q.fixes]
    if fixes:
        lines += ["", "to add the missing members, queue by queue:"] + [f"  {f}" for _, f in fixes]
    if health.grow_commands:
        lines += ["", "or every quorum queue of this installation at once, one command per node:"]
        lines += [f"  {c}" for c in health.grow_commands]
    return "\n".join(lines)


@click.command("doctor", epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def doctor(as_json: bool) -> None:
    """Check that openfero's queues have the replicas wanted and every broker node runs.

    Lists each queue's members against OPENFERO_QUORUM_INITIAL_GROUP_SIZE
    (at most the number of nodes) and prints the RabbitMQ commands that add
    missing members. Exit code 1 when anything is wrong.
    """
    try:
        broker = load(BrokerSettings)
        api = ManagementApi.from_settings(broker, load(ManagementSettings))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    vhost = vhost_of(broker.amqp_url)
    try:
        health = assess(Names(broker.queue_prefix), vhost, api.nodes(), api.queues(vhost), broker.quorum_initial_group_size)
    except ManagementError as exc:
        click.echo(f"openfero: management API: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(health.to_dict(), indent=2) if as_json else render(health))
    sys.exit(0 if health.ok else 1)
