"""The in-process seam: the real ``Dispatcher`` on the real broker, in the test's own event loop.

``running_dispatcher`` runs the consuming loop, the handler and the retry
and dead-letter decisions exactly as ``python -m dispatcher`` does, on a
topology of the test's own prefix; only the Job sink is the test's: a
``RecordingSink``, or the real ``JobCreator`` against the API double when
the test is about the API's answers. Webhooks are posted as ingest stores
them: read by ``ingest.reading`` and published by ``ingest.publishing``.

What needs processes (a crash, SIGTERM, a broker restart, a lost node)
stays with tests.harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika

from dispatcher.catalog import Catalog
from dispatcher.consuming import Dispatcher
from dispatcher.handling import Handler, JobSink
from dispatcher.jobs import ApiFailure
from dispatcher.rendering import JobRules
from dispatcher.results import Failure
from dispatcher.retrying import RetryPolicy
from dispatcher.silencing import SilenceKeeper
from ingest.publishing import Publisher
from ingest.reading import Refused, read_webhook
from shared.broker import BrokerLink
from shared.logs import JsonFormatter
from shared.settings import BrokerSettings, DispatcherSettings, IngestSettings, RetrySettings, load
from shared.topology import ALERT_ROUTING_KEY, Names
from tests.conftest import TEST_RETRY_DELAYS

FINAL = ("created", "duplicate", "no_definition", "dead_lettered")  # what a message can end as (a retry comes back)


class RecordingSink:
    """A JobSink that keeps the Jobs it is given; a name seen before is a duplicate, as the API's 409 makes it.

    ``fail(failure, times)`` makes the next ``times`` creates fail with
    ``failure``, as the JobCreator fails (``ApiFailure``).
    """

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.calls = 0
        self._failures: deque[Failure] = deque()

    def fail(self, failure: Failure, times: int = 1) -> None:
        self._failures.extend([failure] * times)

    async def create(self, body: dict[str, Any]) -> bool:
        self.calls += 1
        if self._failures:
            raise ApiFailure(self._failures.popleft())
        if body["metadata"]["name"] in self.names():
            return False
        self.jobs.append(body)
        return True

    def names(self) -> list[str]:
        return [job["metadata"]["name"] for job in self.jobs]


class LogEvents(logging.Handler):
    """openfero's log lines in this process, each as the JSON object the services print."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self._format = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self._format.format(record)))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]


@contextlib.contextmanager
def log_events() -> Iterator[LogEvents]:
    """Capture what openfero's loggers say (any level) while the block runs."""
    capture = LogEvents()
    logger = logging.getLogger("openfero")
    level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


class Running:
    """A dispatcher consuming in this process, and the means to feed it and read what it did."""

    def __init__(self, dispatcher: Dispatcher, ingest: BrokerLink, log: LogEvents):
        self.dispatcher = dispatcher
        self.log = log
        self.names = ingest.names
        self._ingest = ingest
        self._publisher = Publisher(ingest, timeout_s=10)

    async def post(self, webhook: bytes) -> int:
        """Store a webhook's alerts as ingest does (read, checked, published with confirms); how many."""
        envelopes = read_webhook(webhook, IngestSettings())
        assert not isinstance(envelopes, Refused), envelopes
        await self._publisher.publish(envelopes)
        return len(envelopes)

    async def publish_raw(self, body: bytes, routing_key: str = ALERT_ROUTING_KEY) -> None:
        """Publish ``body`` as it is, as a client other than ingest could."""
        exchange = await self._channel().get_exchange(self.names.exchange)
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.log.events(name)

    def ended(self) -> int:
        """How many messages reached an end (a Job, nothing to do, a dead letter); a retry is not one."""
        return sum(self.dispatcher.outcomes[kind] for kind in FINAL)

    async def settled(self, count: int, timeout_s: float = 30.0) -> None:
        """Return once ``count`` messages have reached an end, and nothing is held or waiting to come back."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.ended() >= count and not self.dispatcher.in_flight and not any((await self.depths()).values()):
                return
            assert time.monotonic() < deadline, f"{self.ended()} of {count} messages ended in {timeout_s} s: {dict(self.dispatcher.outcomes)}"
            await asyncio.sleep(0.02)

    async def depths(self) -> dict[str, int]:
        """Messages in the work queue ("work") and in each delay queue ("delay.0.2s" ...)."""
        found = {"work": await self._depth(self.names.work_queue)}
        for delay in self.dispatcher.retry.delays_s:
            found[Names.delay_routing_key(delay)] = await self._depth(self.names.delay_queue(delay))
        return found

    async def dead_depth(self) -> int:
        return await self._depth(self.names.dead_queue)

    async def dead_letters(self) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take every message off the dead-letter queue."""
        channel = self._channel()
        queue = await channel.declare_queue(self.names.dead_queue, passive=True)
        letters = []
        while (letter := await queue.get(fail=False, no_ack=True)) is not None:
            letters.append(letter)
        return letters

    async def _depth(self, queue: str) -> int:
        declared = await self._channel().declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0

    def _channel(self) -> aio_pika.abc.AbstractChannel:
        channel = self._ingest.channel
        assert channel is not None, "the ingest side is connected"
        return channel


@contextlib.asynccontextmanager
async def running_dispatcher(
    amqp_url: str,
    prefix: str,
    configmaps: list[dict[str, Any]],
    sink: JobSink,
    max_attempts: int = 4,
    prefetch: int = 16,
    retry: RetryPolicy | None = None,
    silences: SilenceKeeper | None = None,
) -> AsyncIterator[Running]:
    """The real Dispatcher on topology ``prefix`` with the ConfigMap definitions ``configmaps``, Jobs going to ``sink``
    (after their silence, with ``silences``).

    Retries as the subprocess tests have them (tests.conftest.TEST_RETRY_DELAYS, ``max_attempts``),
    unless ``retry`` says otherwise. Stopped, with its links, when the block ends.
    """
    broker = BrokerSettings(amqp_url=amqp_url, queue_prefix=prefix, reconnect_max_s=0.5)
    retry = retry or RetryPolicy.from_settings(
        load(RetrySettings, {"OPENFERO_RETRY_DELAYS_SECONDS": TEST_RETRY_DELAYS, "OPENFERO_RETRY_MAX_ATTEMPTS": str(max_attempts)})
    )
    catalog = Catalog()
    catalog.replace_configmaps(configmaps)
    catalog.replace_operarii([])
    rules = JobRules(load(DispatcherSettings, {}).job_ttl_s, "default")
    dispatcher = Dispatcher(broker, Handler(catalog, sink, rules, None, silences), prefetch, retry)
    ingest = BrokerLink(broker)
    stop = asyncio.Event()
    with log_events() as log:
        tasks = [asyncio.create_task(dispatcher.run(stop, grace_s=5), name="dispatcher"), asyncio.create_task(ingest.run(), name="ingest-link")]
        try:
            await asyncio.wait_for(asyncio.gather(dispatcher.link.ready.wait(), ingest.ready.wait()), 10)
            yield Running(dispatcher, ingest, log)
        finally:
            stop.set()
            await asyncio.wait_for(tasks[0], 15)
            await ingest.close()
            tasks[1].cancel()
            await asyncio.gather(tasks[1], return_exceptions=True)

