"""Operator commands: `openfero dlq ...` and `openfero replay`.

Exit codes: 0 done (also when nothing matched), 1 the broker could not be
reached or the operation failed part-way (run it again: nothing is lost),
2 wrong usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import aio_pika
import click

from openfero.records import Filter, Record
from shared import headers as h
from openfero.replaying import Archive, DeadLetters, Result
from shared.durations import parse_time
from shared.settings import BrokerSettings, help_epilog, load
from shared.topology import Names

T = TypeVar("T")
EPILOG = help_epilog(BrokerSettings)


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _labels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        name, sep, label_value = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE")
        labels[name] = label_value
    return labels


def filter_options(reason: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The filter options, shared by every command that selects alerts."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--alertname", help="Only alerts of this alertname."),
            click.option("--status", type=click.Choice(["firing", "resolved"]), help="Only alerts of this status."),
            click.option("--label", "labels", multiple=True, callback=_labels, metavar="NAME=VALUE", help="Only alerts with this label (repeatable: all must match)."),
            click.option("--fingerprint", help="Only the alert with this fingerprint."),
        ]
        if reason:
            options.append(click.option("--id", "ids", multiple=True, metavar="MESSAGE_ID", help="Only the dead letter with this message id (repeatable: any of them)."))
            options.append(click.option("--reason", help="Only dead letters whose reason contains this text (any case)."))
            options.append(click.option("--since", callback=_time, help="Only dead letters whose last failure is this late or later: a duration ago (2h) or a time."))
            options.append(click.option("--until", callback=_time, help="Only dead letters whose last failure is earlier than this."))
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _filter(kwargs: dict[str, Any], since: datetime | None = None, until: datetime | None = None) -> Filter:
    since = since or kwargs.get("since")
    until = until or kwargs.get("until")
    return Filter(
        alertname=kwargs.get("alertname"),
        status=kwargs.get("status"),
        labels=kwargs.get("labels") or {},
        fingerprint=kwargs.get("fingerprint"),
        reason=kwargs.get("reason"),
        since=since,
        until=until,
        ids=frozenset(kwargs["ids"]) if kwargs.get("ids") else None,
    )


def _run(work: Callable[[aio_pika.abc.AbstractConnection, Names], Awaitable[T]]) -> T:
    """Run ``work`` on a connection to the broker; broker trouble is exit code 1."""
    broker = load(BrokerSettings)

    async def main() -> T:
        connection = await aio_pika.connect(broker.amqp_url, timeout=10)
        try:
            return await work(connection, Names(broker.queue_prefix))
        finally:
            await connection.close()

    try:
        return asyncio.run(main())
    except (aio_pika.exceptions.AMQPError, ConnectionError, OSError, TimeoutError) as exc:
        click.echo(f"openfero: broker: {exc!r}", err=True)
        sys.exit(1)


class Progress:
    """A progress bar on a terminal's stderr (a count where the total is unknown); silent elsewhere."""

    def __init__(self, label: str):
        self.label = label
        self.shown = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.shown:
            return
        if total:
            filled = 30 * done // total
            line = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        else:
            line = f"{self.label}: {done}"
        click.echo("\r" + line, err=True, nl=False)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            click.echo(err=True)


def _table(records: list[Record]) -> str:
    rows = [("WHEN", "ALERTNAME", "STATUS", "FINGERPRINT", "ATTEMPTS", "ID", "REASON")]
    for r in records:
        when = r.when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if r.when else "-"
        # Cut long reasons on a terminal only: piped output stays whole for grep.
        reason = r.reason if len(r.reason) <= 100 or not sys.stdout.isatty() else r.reason[:97] + "..."
        rows.append((when, r.alertname or "-", r.status or "-", r.fingerprint or "-", str(r.attempts), r.id, reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows)


def _emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(payload, indent=2, default=str) if as_json else text)


def _json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)


@click.group(epilog=EPILOG, context_settings={"max_content_width": 100})
def dlq() -> None:
    """Inspect, replay and purge the dead-letter queue."""


@dlq.command("list", epilog=EPILOG)
@filter_options(reason=True)
@_json_option
def dlq_list(as_json: bool, **kwargs: Any) -> None:
    """List dead-lettered alerts; they stay in the queue."""
    selector = _filter(kwargs)
    result = _run(lambda c, n: DeadLetters(c, n).select(selector))
    text = _table(result.matched) + f"\n\n{len(result.matched)} of {result.read} dead letters matched"
    _emit(as_json, {**result.counts(), "dead_letters": [r.summary() for r in result.matched]}, text)


@dlq.command("show", epilog=EPILOG)
@click.argument("message_id")
@_json_option
def dlq_show(message_id: str, as_json: bool) -> None:
    """Show one dead letter in full: headers and body."""
    result = _run(lambda c, n: DeadLetters(c, n).select(Filter()))
    found = [r for r in result.matched if r.id == message_id]
    if not found:
        click.echo(f"openfero: no dead letter with id {message_id!r}", err=True)
        sys.exit(1)
    record = found[0]
    try:
        body: Any = json.loads(record.body)
    except ValueError:
        body = record.body.decode(errors="replace")
    payload = {**record.summary(), "headers": record.headers, "body": body}
    text = json.dumps(payload, indent=2, default=str, ensure_ascii=False)
    _emit(as_json, payload, text)


@dlq.command("replay", epilog=EPILOG)
@filter_options(reason=True)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@_json_option
def dlq_replay(dry_run: bool, as_json: bool, **kwargs: Any) -> None:
    """Move dead letters back into the work queue, attempts reset.

    Each copy is confirmed in the work queue before its dead letter is
    removed: an interrupted replay may duplicate (harmless) but never loses.
    """
    selector = _filter(kwargs)

    progress = Progress("replaying")

    async def work(connection: aio_pika.abc.AbstractConnection, names: Names) -> Result:
        dead = DeadLetters(connection, names)
        if dry_run:
            return await dead.select(selector)
        return await dead.replay(selector, progress)

    result = _run(work)
    progress.close()
    verb = "would replay" if dry_run else "replayed"
    text = f"matched {len(result.matched)}, {verb} {len(result.matched) if dry_run else result.done}, skipped {result.skipped}"
    _emit(as_json, {**result.counts(), "dry_run": dry_run, "ids": [r.id for r in result.matched]}, text)


@dlq.command("purge", epilog=EPILOG)
@filter_options(reason=True)
@click.option("--yes", is_flag=True, help="Really delete them.")
@_json_option
def dlq_purge(yes: bool, as_json: bool, **kwargs: Any) -> None:
    """Delete dead letters for good."""
    if not yes:
        raise click.UsageError("purge deletes dead letters for good: add --yes")
    selector = _filter(kwargs)
    progress = Progress("purging")
    result = _run(lambda c, n: DeadLetters(c, n).purge(selector, progress))
    progress.close()
    _emit(as_json, {**result.counts(), "ids": [r.id for r in result.matched]}, f"purged {result.done} of {result.read} dead letters")


@click.group(epilog=EPILOG, context_settings={"max_content_width": 100})
def parked() -> None:
    """Inspect, replay and purge the alerts parked by open breakers (<prefix>.parked)."""


@parked.command("list", epilog=EPILOG)
@filter_options(reason=True)
@_json_option
def parked_list(as_json: bool, **kwargs: Any) -> None:
    """List parked alerts; they stay in the queue. --since and --until read when each was parked."""
    selector = _filter(kwargs)
    result = _run(lambda c, n: DeadLetters(c, n, parked=True).select(selector))
    text = _parked_table(result.matched) + f"\n\n{len(result.matched)} of {result.read} parked alerts matched"
    _emit(as_json, {**result.counts(), "parked": [{**r.summary(), "definition": r.headers.get(h.DEFINITION)} for r in result.matched]}, text)


@parked.command("replay", epilog=EPILOG)
@filter_options(reason=True)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@_json_option
def parked_replay(dry_run: bool, as_json: bool, **kwargs: Any) -> None:
    """Move parked alerts back into the work queue (after `openfero definitions resume`, or they are parked again)."""
    selector = _filter(kwargs)
    progress = Progress("replaying")

    async def work(connection: aio_pika.abc.AbstractConnection, names: Names) -> Result:
        queue = DeadLetters(connection, names, parked=True)
        return await (queue.select(selector) if dry_run else queue.replay(selector, progress))

    result = _run(work)
    progress.close()
    verb = "would replay" if dry_run else "replayed"
    text = f"matched {len(result.matched)}, {verb} {len(result.matched) if dry_run else result.done}, skipped {result.skipped}"
    _emit(as_json, {**result.counts(), "dry_run": dry_run, "ids": [r.id for r in result.matched]}, text)


@parked.command("purge", epilog=EPILOG)
@filter_options(reason=True)
@click.option("--yes", is_flag=True, help="Really delete them.")
@_json_option
def parked_purge(yes: bool, as_json: bool, **kwargs: Any) -> None:
    """Delete parked alerts for good."""
    if not yes:
        raise click.UsageError("purge deletes parked alerts for good: add --yes")
    selector = _filter(kwargs)
    progress = Progress("purging")
    result = _run(lambda c, n: DeadLetters(c, n, parked=True).purge(selector, progress))
    progress.close()
    _emit(as_json, {**result.counts(), "ids": [r.id for r in result.matched]}, f"purged {result.done} of {result.read} parked alerts")


def _parked_table(records: list[Record]) -> str:
    rows = [("PARKED", "ALERTNAME", "FINGERPRINT", "DEFINITION", "ID")]
    for r in records:
        when = r.when.strftime("%Y-%m-%d %H:%M:%S") if r.when else "-"
        definition = r.headers.get(h.DEFINITION)
        rows.append((when, r.alertname or "-", r.fingerprint or "-", definition if isinstance(definition, str) else "-", r.id))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in rows)


@click.command("replay", epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option("--since", required=True, callback=_time, help="Start of the window, inclusive: a duration ago (2h) or a time (2026-01-02T03:00:00Z).")
@click.option("--until", callback=_time, help="End of the window, exclusive. Default: now.")
@filter_options(reason=False)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@click.option("--force", is_flag=True, help="Run the remediation again even where its Job exists (new Job names).")
@_json_option
def replay(since: datetime, until: datetime | None, dry_run: bool, force: bool, as_json: bool, **kwargs: Any) -> None:
    """Replay the alerts received in a time window from the archive.

    The window is [--since, --until): an alert counts by the time ingest
    received it. Replayed alerts map to the Job names they had, so what
    already ran creates nothing new unless --force.
    """
    until = until or datetime.now(timezone.utc)
    if until <= since:
        raise click.BadParameter("--until must be later than --since")
    selector = _filter(kwargs, since=since, until=until)

    progress = Progress("replaying")

    async def work(connection: aio_pika.abc.AbstractConnection, names: Names) -> tuple[Result, str]:
        return await Archive(connection, names).replay(selector, dry_run, force, progress=progress)

    result, run_id = _run(work)
    progress.close()
    verb = "would replay" if dry_run else "replayed"
    done = len(result.matched) if dry_run else result.done
    text = f"read {result.read}, matched {len(result.matched)}, {verb} {done}, skipped {result.skipped}"
    if run_id:
        text += f" (run id {run_id}: new Job names)"
    payload = {
        **result.counts(),
        "dry_run": dry_run,
        "run_id": run_id or None,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "alerts": [r.summary() for r in result.matched],
    }
    _emit(as_json, payload, text)

