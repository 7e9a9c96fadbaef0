"""`openfero history`: the alerts received, the Job each became and how it ended.

It reads two streams, both kept with the archive's retention: the archive
(every alert ingest stored) and ``<prefix>.outcomes`` (every outcome the
outcome leader recorded), from a little before ``--since`` to their end,
and joins them (openfero.timeline). Jobs and Events expire (a Job's TTL,
Events after about an hour); the streams keep the history for as long as
the archive keeps alerts. Reading changes nothing.

Exit codes as the other operator commands: 0 done (also when nothing
matched), 1 the broker could not be reached, 2 wrong usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timezone
from typing import Any

import aio_pika
import click

from openfero.operations import EPILOG, _run, _time
from openfero.records import Record
from openfero.replaying import ARCHIVE_LEAD
from openfero.timeline import NO_OUTCOME, HistoryFilter, join, table
from shared.topology import Names

_PREFETCH = 500
# The end of a stream is where nothing more comes for this long.
IDLE_S = 0.5


class StreamMissing(Exception):
    """The stream does not exist (yet): no process of a version that declares it has connected."""


async def read_stream(connection: aio_pika.abc.AbstractConnection, queue: str, start: datetime, idle_s: float = IDLE_S) -> list[tuple[bytes, dict[str, Any], str | None]]:
    """Every message of the stream ``queue`` from about ``start`` (chunk-granular) to its end."""
    channel = await connection.channel()
    found = []
    try:
        await channel.set_qos(prefetch_count=_PREFETCH)  # a stream consumer must set one (facts.md)
        try:
            stream = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            raise StreamMissing(queue) from None
        async with stream.iterator(arguments={"x-stream-offset": start}) as messages:
            while True:
                try:
                    message = await asyncio.wait_for(messages.__anext__(), timeout=idle_s)
                except (TimeoutError, StopAsyncIteration):
                    break
                await message.ack()  # never reject on a stream: 3.10 closes the channel
                found.append((message.body, dict(message.headers or {}), message.message_id))
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return found


async def read_history(connection: aio_pika.abc.AbstractConnection, names: Names, since: datetime) -> tuple[list[Record], list[dict[str, Any]]]:
    start = since - ARCHIVE_LEAD

    async def read(queue: str, missing: str) -> list[tuple[bytes, dict[str, Any], str | None]]:
        try:
            return await read_stream(connection, queue, start)
        except StreamMissing:
            click.echo(f"openfero: {queue} does not exist yet: {missing}", err=True)
            return []

    archived, recorded = await asyncio.gather(
        read(names.archive, "no alert was received"),
        read(names.outcomes, "no outcome was recorded (dispatchers of an older version?)"),
    )
    alerts = [Record.of(body, headers, message_id, dead=False) for body, headers, message_id in archived]
    outcomes = []
    for body, _, _ in recorded:
        try:
            parsed = json.loads(body)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            outcomes.append(parsed)
    return alerts, outcomes


def _outcome(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    allowed = ("Succeeded", "Failed", "Deleted", "suppressed", "waiting", "parked", NO_OUTCOME)
    for word in allowed:
        if value.lower() == word.lower():
            return word
    raise click.BadParameter(f"{value!r}: one of {', '.join(allowed)}")


@click.command("history", epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option("--since", callback=_time, default="24h", show_default=True, help="Alerts received this late or later: a duration ago (2h) or a time (2026-01-02T03:00:00Z).")
@click.option("--alertname", help="Only alerts of this alertname.")
@click.option("--outcome", callback=_outcome, metavar="OUTCOME", help="Only alerts with a Job that ended so: Succeeded, Failed, Deleted; held back by storm control: suppressed, waiting, parked; or none (no outcome recorded yet).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def history(since: datetime, alertname: str | None, outcome: str | None, as_json: bool) -> None:
    """Show the alerts received, the Job each became and how it ended.

    One row per alert occurrence and Job. SEEN is how many times the
    occurrence was received; an occurrence without an outcome has no Job
    that ended yet (still running, no definition, or outcome tracking off).
    """
    selector = HistoryFilter(since=since, alertname=alertname, outcome=outcome)
    alerts, outcomes = _run(lambda connection, names: read_history(connection, names, since))
    occurrences = join(alerts, outcomes, selector)
    if as_json:
        payload = {
            "since": since.isoformat(),
            "read": {"alerts": len(alerts), "outcomes": len(outcomes)},
            "alerts": [o.to_dict() for o in occurrences],
        }
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    jobs = sum(len(o.outcomes) for o in occurrences)
    click.echo(table(occurrences) + f"\n\n{len(occurrences)} alert occurrences since {since.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}Z, {jobs} Jobs ended")

