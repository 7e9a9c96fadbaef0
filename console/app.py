"""The console's process: its sources wired to one timeline, and the web application over them.

Sources, each started with the application and stopped with it:
- the broker link (shared.broker), on whose connection the archive and the
  outcome stream are followed (console.following), dead letters are read
  (console.deadletters) and queues are probed (console.probing);
- the cluster (console.cluster): openfero's Jobs, the definitions, events.
Nothing is written anywhere but by an operator's replay or purge.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from console import csrf, security
from console.cluster import Cluster
from console.deadletters import DeadLetterDesk, Reading
from console.following import Streams, outcome_stream
from console.live import Hub
from console.probing import Prober
from console.storm import NoStormControls, StormControls
from console.timeline import AlertEntry, Timeline
from dispatcher.catalog import Catalog
from dispatcher.naming import env_collisions
from dispatcher.rendering import JobRules
from openfero.doctor import ManagementApi
from openfero.records import Record
from shared.broker import BrokerLink
from shared.envelope import Alert
from shared.settings import SERVICE_ACCOUNT_NAMESPACE_FILE, BrokerSettings, ConsoleSettings, KubeSettings, SettingsError
from shared.topology import Names

log = logging.getLogger("openfero.console")

CONSOLE = web.AppKey("console", object)
_PRUNE_EVERY_S = 60.0
_RELOOKUP_DELAY_S = 1.0
_TIMELINE_DEAD_LETTERS_EVERY_S = 30.0


class RecentErrors(logging.Handler):
    """The console's own warnings and errors, the latest first, for the health page."""

    def __init__(self, kept: int = 50):
        super().__init__(logging.WARNING)
        self.records: collections.deque[tuple[datetime, str, str]] = collections.deque(maxlen=kept)

    def emit(self, record: logging.LogRecord) -> None:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        self.records.appendleft((when, getattr(record, "event", record.name), record.getMessage()[:500]))


@dataclass
class Console:
    settings: ConsoleSettings
    broker: BrokerSettings
    kube: KubeSettings
    rules: JobRules
    window: timedelta
    csrf_key: bytes
    gate: security.Gate
    management: ManagementApi | None
    delays_s: tuple[float, ...]
    storm: StormControls = field(default_factory=NoStormControls)
    api_client: Any = None
    catalog: Catalog = field(default_factory=Catalog)
    hub: Hub = field(default_factory=Hub)
    errors: RecentErrors = field(default_factory=RecentErrors)
    streams_open: int = 0
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        self.names = Names(self.broker.queue_prefix)
        self.timeline = Timeline(self.window, self.settings.max_alerts, self.hub.changed)
        self.link = BrokerLink(self.broker, on_connected=self._connected)
        self.streams = Streams(self.names, self.window, self._alert, self.timeline.apply_outcome)
        self.desk = DeadLetterDesk(self.names, lambda: self.link.connection, self.settings.dead_letters_cache_s, self._dead_letters_read)
        self.prober = Prober(self.names, self.delays_s, outcome_stream(self.names), self.management, self.broker.amqp_url)
        self.cluster: Cluster | None = None
        self._relookup: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._dead_letters_read_at = 0.0

    # -- feeding the timeline ------------------------------------------------------------------

    async def _connected(self, channel: Any, declared: Any) -> None:
        connection = self.link.connection
        assert connection is not None
        await self.streams.on_connected(connection)

    def lookup(self, alert: Alert) -> tuple[str, str]:
        """(definition, refusal) as the dispatcher would find them now."""
        collisions = env_collisions(alert.labels)
        if collisions:
            name, labels = min(collisions.items())
            return "", f"labels {' and '.join(map(repr, labels))} would both be {name}"
        found = self.catalog.lookup(alert)
        return (f"{found.definition.source}/{found.definition.key}" if found.definition else ""), ""

    def _alert(self, record: Record) -> None:
        assert record.envelope is not None and record.when is not None
        alert = record.envelope.alert
        definition, refused = self.lookup(alert) if self.catalog.synced else ("", "")
        self.timeline.add_alert(
            AlertEntry(record.id, record.when, alert.alertname, alert.status, alert.labels, alert.fingerprint, alert.starts_at, definition, refused, body=record.body)
        )

    def definitions_changed(self) -> None:
        """Look every alert up again, a moment after the definitions stop changing."""
        if self._relookup is not None:
            self._relookup.cancel()
        loop = asyncio.get_running_loop()
        self._relookup = loop.call_later(_RELOOKUP_DELAY_S, lambda: self._spawn(self._look_up_again()))

    async def _look_up_again(self) -> None:
        entries = list(self.timeline.alerts.values())

        def work() -> list[tuple[AlertEntry, tuple[str, str]]]:
            return [(e, self.lookup(Alert(e.status, e.labels, fingerprint=e.fingerprint, starts_at=e.starts_at))) for e in entries]

        for entry, (definition, refused) in await asyncio.to_thread(work):
            if (entry.definition, entry.refused) != (definition, refused):
                entry.definition, entry.refused = definition, refused
                self.timeline.touch(entry.id)

    def _dead_letters_read(self, reading: Reading) -> None:
        self.timeline.set_dead_letters({r.id: r.reason for r in reading.records})

    def refresh_dead_letters_soon(self) -> None:
        """Mark dead-lettered alerts on the timeline now and then, while someone looks at it."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._dead_letters_read_at >= _TIMELINE_DEAD_LETTERS_EVERY_S:
            self._dead_letters_read_at = loop.time()
            self._spawn(self.desk.reading())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(_PRUNE_EVERY_S)
            self.timeline.prune(datetime.now(timezone.utc))

    # -- running -----------------------------------------------------------------------------------

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        logging.getLogger().addHandler(self.errors)
        self.cluster = Cluster(loop, self.kube, self.catalog, self.timeline.replace_jobs, self.timeline.apply_job, self.definitions_changed)
        self.cluster.start(self.api_client)
        if self.api_client is None:
            self.definitions_changed()
        link_task = loop.create_task(self.link.run(), name="broker-link")
        prune_task = loop.create_task(self._prune(), name="prune")
        storm_stop = asyncio.Event()
        storm_task = loop.create_task(self.storm.run(storm_stop), name="storm-controls")
        log.info(
            "console starting",
            extra={"event": "console.starting", "addr": self.settings.addr, "auth": self.gate.mode, "read_only": self.settings.read_only, "prefix": self.broker.queue_prefix, "cluster": self.api_client is not None},
        )
        yield
        storm_stop.set()
        self.hub.close()
        await self.desk.close()
        self.cluster.stop()
        await self.streams.close()
        await self.link.close()
        for task in (link_task, prune_task, storm_task, *self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        logging.getLogger().removeHandler(self.errors)


def create_console(
    settings: ConsoleSettings,
    broker: BrokerSettings,
    kube: KubeSettings,
    rules: JobRules,
    management: ManagementApi | None,
    delays_s: tuple[float, ...],
    api_client: Any = None,
    storm: StormControls | None = None,
) -> Console:
    window = timedelta(seconds=settings.window_s)
    console_box: list[Console] = []
    if storm is None and api_client is not None:
        from console.storm import ClusterStormControls

        own = kube.own_namespace or (SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE_FILE.exists() else "")
        # The breakers' Lease is where the dispatchers keep it: their namespace
        storm = ClusterStormControls(api_client, own or kube.definitions_namespace, broker.queue_prefix, lambda: console_box[0].link.connection if console_box else None)
    if settings.max_alerts < 1 or settings.max_streams < 1:
        raise SettingsError("OPENFERO_CONSOLE_MAX_ALERTS and OPENFERO_CONSOLE_MAX_STREAMS need at least 1")
    made = Console(
        settings=settings,
        broker=broker,
        kube=kube,
        rules=rules,
        window=window,
        csrf_key=csrf.load_key(settings.csrf_key_file),
        gate=security.Gate.from_settings(settings),
        management=management,
        delays_s=delays_s,
        storm=storm or NoStormControls(),
        api_client=api_client,
    )
    console_box.append(made)
    return made


def create_app(console: Console) -> web.Application:
    from console import views

    app = web.Application(client_max_size=console.settings.max_body_bytes, middlewares=[security.middleware(console.gate, console.csrf_key)])
    app[CONSOLE] = console
    app.cleanup_ctx.append(console.run)
    app.on_shutdown.append(lambda _: _close_streams(console))
    views.add_routes(app)
    return app


async def _close_streams(console: Console) -> None:
    console.hub.close()
