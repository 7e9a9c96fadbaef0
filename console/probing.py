"""The broker's side of the health page: queue depths, consumers, the dispatchers seen.

Depths and consumer counts come over AMQP (a passive declare of each queue,
which every user may make). Which dispatchers consume the work queue comes
from RabbitMQ's management API (OPENFERO_MANAGEMENT_URL, as `openfero
doctor` reads it): each consumer's connection carries the name openfero
gives it, ``openfero <host>/<pid>``, so a dispatcher is seen while it holds
a consumer on the work queue, and gone the moment it stops consuming.
Without the management API the page shows the consumer count alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection

from openfero.doctor import ManagementApi, ManagementError, vhost_of
from shared.topology import Names

_CACHE_S = 3.0
# A page waits this long for the management API, at most (its own timeout is longer).
_MANAGEMENT_WAIT_S = 3.0


@dataclass
class QueueState:
    name: str
    role: str  # work, dead, archive, outcomes, delay
    exists: bool = True
    messages: int | None = None  # ready (streams: their length)
    unacknowledged: int | None = None  # from the management API only
    consumers: int | None = None


@dataclass
class Consumer:
    connection: str  # "openfero <host>/<pid>" for openfero's processes
    peer: str
    prefetch: int | None


@dataclass
class BrokerState:
    connected: bool
    queues: list[QueueState] = field(default_factory=list)
    dispatchers: list[Consumer] | None = None  # None: the management API could not be read
    management_error: str = ""
    read: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def queue(self, role: str) -> QueueState | None:
        return next((q for q in self.queues if q.role == role), None)


class Prober:
    def __init__(self, names: Names, delays_s: tuple[float, ...], outcomes_queue: str, management: ManagementApi | None, amqp_url: str):
        self.names = names
        self.wanted = [(names.work_queue, "work"), (names.dead_queue, "dead"), (names.archive, "archive"), (outcomes_queue, "outcomes")]
        self.wanted += [(names.delay_queue(d), "delay") for d in delays_s]
        self.management = management
        self.vhost = vhost_of(amqp_url)
        self._cached: tuple[float, BrokerState] | None = None
        self._lock = asyncio.Lock()

    async def state(self, connection: AbstractConnection | None) -> BrokerState:
        async with self._lock:  # one reading at a time, shared by every viewer
            if self._cached and time.monotonic() - self._cached[0] < _CACHE_S:
                return self._cached[1]
            state = await self._read(connection)
            self._cached = (time.monotonic(), state)
            return state

    async def _read(self, connection: AbstractConnection | None) -> BrokerState:
        if connection is None or connection.is_closed:
            return BrokerState(connected=False, queues=[QueueState(n, r, exists=False) for n, r in self.wanted])
        state = BrokerState(connected=True)
        channel = None
        for name, role in self.wanted:
            try:
                if channel is None or channel.is_closed:
                    channel = await connection.channel(publisher_confirms=False)
                declared = await channel.declare_queue(name, passive=True)
                result = declared.declaration_result
                state.queues.append(QueueState(name, role, True, result.message_count, None, result.consumer_count))
            except aio_pika.exceptions.ChannelNotFoundEntity:
                channel = None  # the broker closed it
                state.queues.append(QueueState(name, role, exists=False))
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
        if self.management is not None:
            try:
                details = await asyncio.wait_for(asyncio.to_thread(self._management_read), _MANAGEMENT_WAIT_S)
                for queue in state.queues:
                    if queue.name in details["unacked"]:
                        queue.unacknowledged = details["unacked"][queue.name]
                state.dispatchers = details["consumers"]
            except ManagementError as exc:
                state.management_error = str(exc)
            except TimeoutError:
                state.management_error = f"the management API gave no answer within {_MANAGEMENT_WAIT_S:g} s"
        else:
            state.management_error = "no management API configured"
        return state

    def _management_read(self) -> dict[str, Any]:
        assert self.management is not None
        vhost = urllib.parse.quote(self.vhost, safe="")
        unacked: dict[str, int] = {}
        consumers: list[Consumer] = []
        for name, _ in self.wanted[:2]:  # the work and dead-letter queues
            try:
                info = self.management.get(f"/api/queues/{vhost}/{urllib.parse.quote(name, safe='')}")
            except ManagementError as exc:
                if "404" in str(exc):
                    continue
                raise
            unacked[name] = int(info.get("messages_unacknowledged") or 0)
            if name == self.names.work_queue:
                consumers = [
                    Consumer(
                        str((c.get("channel_details") or {}).get("connection_name") or ""),
                        str((c.get("channel_details") or {}).get("peer_host") or ""),
                        c.get("prefetch_count"),
                    )
                    for c in info.get("consumer_details") or []
                ]
        if consumers:
            # Consumers name their connection by address; the name openfero gave it is the connection's own.
            named = {
                str(c.get("name")): str(c.get("user_provided_name") or c.get("name"))
                for c in self.management.get("/api/connections?columns=name,user_provided_name")
            }
            consumers = [Consumer(named.get(c.connection, c.connection), c.peer, c.prefetch) for c in consumers]
        return {"unacked": unacked, "consumers": sorted(consumers, key=lambda c: c.connection)}
