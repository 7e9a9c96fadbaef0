"""A connection to the broker that comes back by itself.

``BrokerLink.run()`` connects, opens one confirming channel, declares the
topology and hands both to a callback; when the connection or the channel
is lost it cleans up and starts again, pausing a little longer each time.
Services start without the broker and become ready when it comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from shared.metrics import BROKER_CONNECTED
from shared.settings import BrokerSettings
from shared.topology import Declared, Names, Retention, declare

log = logging.getLogger(__name__)

OnConnected = Callable[[AbstractChannel, Declared], Awaitable[None]]

_CONNECT_TIMEOUT_S = 5.0


class BrokerLink:
    def __init__(
        self,
        settings: BrokerSettings,
        on_connected: OnConnected | None = None,
        prefetch: int = 0,
        delays_s: tuple[float, ...] = (),
    ):
        self.settings = settings
        self.delays_s = delays_s
        self.retention = Retention(settings.archive_max_age, settings.archive_max_bytes)
        self.names = Names(settings.queue_prefix)
        self._on_connected = on_connected
        self._prefetch = prefetch
        self.channel: AbstractChannel | None = None
        self.declared: Declared | None = None
        self.ready = asyncio.Event()
        self._connection: AbstractConnection | None = None
        self._stopping = False

    async def run(self) -> None:
        """Stay connected until ``close()``; never raises for a broker that is away."""
        pause = 0.1
        while not self._stopping:
            lost = asyncio.Event()
            try:
                await self._connect(lost)
                pause = 0.1
                await lost.wait()
                if not self._stopping:
                    log.warning("broker connection lost; reconnecting", extra={"event": "broker.lost"})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure to connect or declare: try again
                log.warning("broker unreachable: %s", exc or type(exc).__name__, extra={"event": "broker.unreachable"})
            finally:
                self.ready.clear()
                BROKER_CONNECTED.set(0)
                await self._drop_connection()
            if not self._stopping:
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.settings.reconnect_max_s)

    async def _connect(self, lost: asyncio.Event) -> None:
        connection = await aio_pika.connect(self.settings.amqp_url, timeout=_CONNECT_TIMEOUT_S)
        self._connection = connection
        connection.close_callbacks.add(lambda *_: lost.set())
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        channel.close_callbacks.add(lambda *_: lost.set())
        if self._prefetch:
            await channel.set_qos(prefetch_count=self._prefetch)
        declared = await declare(connection, channel, self.names, self.delays_s, self.retention)
        self.channel, self.declared = channel, declared
        if self._on_connected is not None:
            await self._on_connected(channel, declared)
        self.ready.set()
        BROKER_CONNECTED.set(1)
        log.info("connected to the broker", extra={"event": "broker.connected"})

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        self.channel = self.declared = None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), timeout=_CONNECT_TIMEOUT_S)
            except Exception:  # already gone; nothing more to release
                pass

    async def close(self) -> None:
        self._stopping = True
        self.ready.clear()
        await self._drop_connection()
