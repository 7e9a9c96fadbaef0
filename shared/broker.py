"""A connection to the broker that comes back by itself.

``BrokerLink.run()`` connects, opens one confirming channel, declares the
topology and hands both to a callback; when the connection or the channel
is lost it cleans up and starts again, pausing a little longer each time.
Services start without the broker and become ready when it comes.

Publishing has a channel of its own (``publishing_exchange``), apart from
the one that declares and consumes, so that it can be replaced without
touching a consumer: a channel the broker nacks or returns messages on is
not mended by publishing on it again. On RabbitMQ 3.10, a channel that
starts publishing while a quorum queue elects a new leader is nacked on
every publish until it is closed, while a channel opened a moment later
works (measured: see README, Guarantees). ``renew_publishing`` drops such
a channel; the next publish opens a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from shared.metrics import BROKER_CONNECTED
from shared.settings import BrokerSettings
from shared.topology import Declared, Names, Retention, declare

log = logging.getLogger(__name__)

OnConnected = Callable[[AbstractChannel, Declared], Awaitable[None]]

_CONNECT_TIMEOUT_S = 5.0
# Fresh publishing channels at most this often: while a broker refuses everything,
# many publishes fail at once and would otherwise churn through channels.
_CHANNEL_MIN_INTERVAL_S = 0.2


def connection_name(pid: int | None = None) -> str:
    """What the broker's management UI and `rabbitmqctl list_connections` show for a process of openfero."""
    return f"openfero {socket.gethostname()}/{pid or os.getpid()}"


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
        self._lost: asyncio.Event | None = None
        self._publishing: AbstractExchange | None = None
        self._publishing_lock = asyncio.Lock()
        self._publishing_opened = float("-inf")
        self._stopping = False

    async def run(self) -> None:
        """Stay connected until ``close()``; never raises for a broker that is away."""
        pause = 0.1
        while not self._stopping:
            lost = self._lost = asyncio.Event()
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
        connection = await aio_pika.connect(
            self.settings.amqp_url, timeout=_CONNECT_TIMEOUT_S, client_properties={"connection_name": connection_name()}
        )
        self._connection = connection
        connection.close_callbacks.add(lambda *_: lost.set())
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        channel.close_callbacks.add(lambda *_: lost.set())
        if self._prefetch:
            await channel.set_qos(prefetch_count=self._prefetch)
        declared = await declare(
            connection, channel, self.names, self.delays_s, self.retention, self.settings.quorum_initial_group_size
        )
        self.channel, self.declared = channel, declared
        if self._on_connected is not None:
            await self._on_connected(channel, declared)
        self.ready.set()
        BROKER_CONNECTED.set(1)
        log.info("connected to the broker", extra={"event": "broker.connected"})

    @property
    def connection(self) -> AbstractConnection | None:
        """The current connection, for channels of a caller's own (from ``on_connected`` on); None between connections."""
        return self._connection

    async def publishing_exchange(self) -> AbstractExchange:
        """The topology's exchange on the publishing channel, opened on first use after each (re)connect.

        Waits until the link is connected. Raises if the connection will not
        open a channel; the caller tries again (see ``reconnect``).
        """
        while True:
            await self.ready.wait()
            async with self._publishing_lock:
                connection, current = self._connection, self._publishing
                if not self.ready.is_set() or connection is None:
                    continue  # lost while waiting for the lock
                if current is not None and not current.channel.is_closed:  # type: ignore[attr-defined]  # every aio-pika Exchange has the channel its AbstractExchange does not declare
                    return current
                loop = asyncio.get_running_loop()
                await asyncio.sleep(self._publishing_opened + _CHANNEL_MIN_INTERVAL_S - loop.time())
                self._publishing_opened = loop.time()
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._publishing = await channel.get_exchange(self.names.exchange, ensure=False)
                return self._publishing

    async def renew_publishing(self, used: AbstractExchange, reason: str) -> None:
        """Give up the publishing channel of ``used``; the next ``publishing_exchange()`` opens a fresh one.

        Many publishes fail together on one bad channel: only the first call
        for that channel closes it, the others find it replaced already.
        """
        async with self._publishing_lock:
            if self._publishing is not used:
                return
            self._publishing = None
        log.info("publishing channel renewed: %s", reason, extra={"event": "broker.channel_renewed", "reason": reason})
        # Publishes still waiting on it fail at once and are tried again on the fresh one.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(used.channel.close(), _CONNECT_TIMEOUT_S)  # type: ignore[attr-defined]  # aio-pika's AbstractExchange does not declare .channel

    def reconnect(self, reason: str) -> None:
        """Drop the connection and open a new one (through the Service: maybe to another node)."""
        if self._lost is not None and not self._lost.is_set():
            log.warning("reconnecting: %s", reason, extra={"event": "broker.reconnect", "reason": reason})
            self._lost.set()

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        self.channel = self.declared = None
        self._publishing = None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), timeout=_CONNECT_TIMEOUT_S)
            except Exception:  # already gone; nothing more to release
                pass

    async def close(self) -> None:
        self._stopping = True
        self.ready.clear()
        await self._drop_connection()
