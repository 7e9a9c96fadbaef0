"""Watching the queues' depth and consumers, for metrics and alerts on them.

Ingest runs wherever openfero runs, dispatchers or not, so it is the one to
notice a work queue that nobody consumes.
"""

from __future__ import annotations

import asyncio
import logging

from ingest.metrics import QUEUE_CONSUMERS, QUEUE_MESSAGES
from shared.broker import BrokerLink

log = logging.getLogger("openfero.ingest")

POLL_S = 15.0


async def watch_queues(link: BrokerLink, poll_s: float = POLL_S) -> None:
    """Every ``poll_s``, read the work and dead queues' counts into gauges; forever."""
    while True:
        channel, names = link.channel, link.names
        if link.ready.is_set() and channel is not None:
            try:
                for short, name in (("work", names.work_queue), ("dead", names.dead_queue)):
                    declared = await channel.declare_queue(name, passive=True)
                    QUEUE_MESSAGES.labels(short).set(declared.declaration_result.message_count or 0)
                    QUEUE_CONSUMERS.labels(short).set(declared.declaration_result.consumer_count or 0)
            except Exception as exc:  # the link notices a lost connection and reconnects
                log.debug("could not read queue counts: %s", exc, extra={"event": "queues.unreadable"})
        await asyncio.sleep(poll_s)
