"""Guarding ingest's connections against slow and many clients.

aiohttp has no read timeouts of its own (only keep-alive and size limits),
so each connection's protocol is wrapped here:

- at most ``max_connections`` are open at once; one more is answered 503
  and closed at once, before aiohttp sees it;
- a client has ``header_timeout_s`` to send a request's headers, counted
  from the connection or from the request's first byte; then it gets 408
  and the connection is closed. A connection idle between requests is
  aiohttp's keep-alive to close.

The body has its own deadline, kept by the request handler that reads it
(ingest.app). A request counts as started when ``middleware`` sees it,
which aiohttp does once the headers are parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ingest import metrics


def _answer(status: int, reason: str, message: str) -> bytes:
    body = b'{"error": "%s", "status": %d}' % (message.encode(), status)
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        status,
        reason.encode(),
        len(body),
        body,
    )


_TOO_MANY = _answer(503, "Service Unavailable", "too many connections, retry")
_TOO_SLOW = _answer(408, "Request Timeout", "request headers not received in time")


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a deadline for each request's headers."""

    def __init__(self, guard: ConnectionGuard, inner: Any):
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.in_request = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.guard.open) >= self.guard.max_connections:
            metrics.CONNECTIONS_CLOSED.labels("too_many").inc()
            transport.write(_TOO_MANY)  # type: ignore[attr-defined]
            transport.close()
            return
        self.admitted = True
        self.guard.open[transport] = self
        metrics.CONNECTIONS.set(len(self.guard.open))
        self.inner.connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(self.guard.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            metrics.CONNECTIONS_CLOSED.labels("header_timeout").inc()
            self.transport.write(_TOO_SLOW)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if not self.in_request:
            self._arm()  # the first byte of a request: its headers are due
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self._disarm()
        self.guard.open.pop(self.transport, None)
        metrics.CONNECTIONS.set(len(self.guard.open))
        self.inner.connection_lost(exc)

    def request_started(self) -> None:
        self.in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self.in_request = False


class ConnectionGuard:
    def __init__(self, max_connections: int, header_timeout_s: float):
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: dict[Any, GuardedProtocol] = {}

    def protocol_factory(self, inner_factory: Callable[[], Any]) -> Callable[[], GuardedProtocol]:
        return lambda: GuardedProtocol(self, inner_factory())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks a request as started (its headers are in) and finished."""
        connection = self.open.get(request.transport)
        if connection is None:  # not behind the guard (a test client)
            return await handler(request)
        connection.request_started()
        try:
            return await handler(request)
        finally:
            connection.request_finished()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, guard: ConnectionGuard, host: str, port: int, **kwargs: Any):
        super().__init__(runner, **kwargs)
        self.guard = guard
        self.host, self.port = host, port

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(server), self.host, self.port, ssl=self._ssl_context, backlog=self._backlog, reuse_address=True
        )
