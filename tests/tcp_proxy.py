"""A TCP proxy that tests can cut and restore, to take a server "away" without stopping it.

While cut, it closes every open connection and refuses new ones (it stops
listening), as a crashed or unreachable broker would look to a client. While
stalled, connections stay open but nothing passes: a broker that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int):
        self.target = (target_host, target_port)
        self.port = listen_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


def broker_proxy_url(amqp_url: str, listen_port: int) -> tuple[str, int, str]:
    """(broker host, broker port, the URL that reaches it through a proxy on ``listen_port``)."""
    from yarl import URL

    url = URL(amqp_url)
    return url.host or "127.0.0.1", url.port or 5672, str(url.with_host("127.0.0.1").with_port(listen_port))


async def start_broker_proxy(amqp_url: str) -> tuple[TcpProxy, str]:
    """A started proxy in front of the broker of ``amqp_url``, and the URL to use through it."""
    from tests.conftest import free_port

    listen = free_port()
    host, port, proxied = broker_proxy_url(amqp_url, listen)
    proxy = TcpProxy(host, port, listen)
    await proxy.start()
    return proxy, proxied


class ThreadedTcpProxy:
    """A TcpProxy on an event loop of its own, for tests whose clients are other processes."""

    def __init__(self, target_host: str, target_port: int, listen_port: int):
        import threading

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(target_host, target_port, listen_port)
        self.port = listen_port
        self._call(self.proxy.start())

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.stall)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.resume)

    def close(self) -> None:
        self.resume()
        self._call(self.proxy.cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
