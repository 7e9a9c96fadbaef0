"""Reading large webhook bodies in a worker process, so that the event loop stays free.

Decoding JSON holds the GIL for the whole body (orjson took 1.7 s for
30 MiB of tiny alerts here), so a thread would not help: a process does.
Small bodies are read on the event loop, where handing them over would cost
more than reading them: at most ``INLINE_MAX_BYTES`` and ``INLINE_MAX_OBJECTS``
JSON objects, which ingest.reading turns into envelopes in a few
milliseconds. The worker hands back the envelopes already written, so the
event loop only publishes them.

One worker, started with ingest: large webhooks are rare, and it keeps the
memory of a hostile body in a process of its own. If it dies (killed for
memory, say) the webhook gets 503 and a new worker starts; large bodies
wait for it. Where no worker can be started, bodies are read on the event
loop and a warning says so.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ingest.reading import Refused, read_webhook, warm
from shared.envelope import Envelope
from shared.settings import IngestSettings

log = logging.getLogger("openfero.ingest")

INLINE_MAX_BYTES = 256 * 1024
# Counted as b"{" in the body: every object has one, so this bounds the objects
# (and so the alerts) a body read inline can hold.
INLINE_MAX_OBJECTS = 2000
# Large bodies waiting for the worker at once; more get 503 at once.
MAX_WAITING = 4
UNPICKLE_PART = 500


def _read_in_worker(body: bytes, settings: IngestSettings) -> Refused | list[bytes]:
    """In the worker: read_webhook, its envelopes handed back in parts.

    Unpickled whole, the envelopes of 10,000 alerts held the GIL, and so the
    event loop, for tens of milliseconds in one go; in parts of
    ``UNPICKLE_PART`` they are unpickled a part per turn of the loop.
    """
    read = read_webhook(body, settings)
    if isinstance(read, Refused):
        return read
    return [pickle.dumps(read[start : start + UNPICKLE_PART], protocol=pickle.HIGHEST_PROTOCOL) for start in range(0, len(read), UNPICKLE_PART)]


def _die_with(parent: int) -> None:
    """In the worker: exit once ingest is gone, even killed without a word (it would be left behind)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class WorkerLost(Exception):
    """The worker process died while reading a body; nothing was stored."""


class Busy(Exception):
    """Too many large bodies are waiting for the worker already."""


class BodyReader:
    def __init__(self, settings: IngestSettings):
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None
        self._starting: asyncio.Task[None] | None = None
        self.on_event_loop = False  # no worker can be had here: read everything inline
        self.waiting = 0

    def start(self) -> None:
        """Start a worker in the background; large bodies wait for it."""
        self._starting = asyncio.create_task(self._start(), name="body-worker")

    async def _start(self) -> None:
        pool = None
        try:
            pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with, initargs=(os.getpid(),))
            await asyncio.get_running_loop().run_in_executor(pool, warm)
        except (OSError, BrokenProcessPool) as exc:  # no semaphores (/dev/shm), no fork allowed ...
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            self.on_event_loop = True
            log.warning("no worker process (%s): large bodies are read on the event loop", exc, extra={"event": "ingest.no_worker"})
            return
        except BaseException:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool = pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if self._starting is not None:
            self._starting.cancel()

    @staticmethod
    def inline(body: bytes) -> bool:
        return len(body) <= INLINE_MAX_BYTES and body.count(b"{") <= INLINE_MAX_OBJECTS

    async def read(self, body: bytes) -> list[Envelope] | Refused:
        """The envelopes of a webhook body, or why it is refused; WorkerLost or Busy for a 503."""
        if self.on_event_loop or self.inline(body):
            return read_webhook(body, self.settings)
        if self._pool is None and self._starting is not None:
            await asyncio.shield(self._starting)
            if self.on_event_loop:
                return read_webhook(body, self.settings)
        pool = self._pool
        if pool is None:
            raise WorkerLost("no worker for large webhooks")
        if self.waiting >= MAX_WAITING:
            raise Busy(f"{self.waiting} large webhooks are being read already")
        self.waiting += 1
        try:
            read = await asyncio.get_running_loop().run_in_executor(pool, _read_in_worker, body, self.settings)
        except BrokenProcessPool:
            if self._pool is pool:  # the first to notice starts another
                log.error("the worker reading large webhooks died; starting another", extra={"event": "ingest.worker_lost", "bytes": len(body)})
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                self.start()
            raise WorkerLost("the worker reading the body died") from None
        finally:
            self.waiting -= 1
        if isinstance(read, Refused):
            return read
        envelopes: list[Envelope] = []
        for part in read:
            envelopes += pickle.loads(part)  # from our own worker
            await asyncio.sleep(0)
        return envelopes
