"""A TCP proxy that tests can cut and restore, to take a server "away" without stopping it.

While cut, it closes every open connection and refuses new ones (it stops
listening), as a crashed or unreachable broker would look to a client. While
stalled, connections stay open but nothing passes: a broker that hangs.

``Balancer`` is the same proxy in front of several servers, handing each new
connection to the next in turn, as a Kubernetes Service spreads connections
over the pods of a StatefulSet. A server that refuses the connection (a
node that is down) is skipped for the next, as a Service skips a pod once
its readiness probe fails; ``take_out`` removes a server from the rotation
by hand (a pod that hangs and is not ready).
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

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self.target)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._connect_upstream()
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


class Balancer(TcpProxy):
    """Round-robin over ``targets``; a target that refuses, or is taken out, is skipped."""

    def __init__(self, targets: list[tuple[str, int]], listen_port: int):
        super().__init__(*targets[0], listen_port)
        self.targets = list(targets)
        self.out: set[tuple[str, int]] = set()
        self._next = 0

    def take_out(self, target: tuple[str, int]) -> None:
        self.out.add(target)

    def put_back(self, target: tuple[str, int]) -> None:
        self.out.discard(target)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        first = self._next
        self._next = (self._next + 1) % len(self.targets)
        for i in range(len(self.targets)):
            target = self.targets[(first + i) % len(self.targets)]
            if target in self.out:
                continue
            try:
                return await asyncio.open_connection(*target)
            except OSError:
                continue
        raise ConnectionRefusedError("no server of the balancer accepts connections")


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
    """A TcpProxy (or Balancer) on an event loop of its own, for tests whose clients are other processes."""

    def __init__(self, target_host: str, target_port: int, listen_port: int, proxy: TcpProxy | None = None):
        import threading

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self.proxy = proxy or TcpProxy(target_host, target_port, listen_port)
        self.port = self.proxy.port
        self._call(self.proxy.start())

    @classmethod
    def balancer(cls, targets: list[tuple[str, int]], listen_port: int) -> ThreadedTcpProxy:
        return cls(*targets[0], listen_port, proxy=Balancer(targets, listen_port))

    def take_out(self, target: tuple[str, int]) -> None:
        """Takes effect before it returns: the next connection already skips ``target``."""
        assert isinstance(self.proxy, Balancer)
        self._call(_now(self.proxy.take_out, target))

    def put_back(self, target: tuple[str, int]) -> None:
        assert isinstance(self.proxy, Balancer)
        self._call(_now(self.proxy.put_back, target))

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


async def _now(function, *args):  # type: ignore[no-untyped-def]
    """Run ``function`` on the proxy's loop (for ThreadedTcpProxy._call)."""
    return function(*args)
