"""Publishing a webhook's alerts with broker confirms, all or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone

import aio_pika
from aio_pika.exceptions import DeliveryError

from shared.broker import BrokerLink
from shared.envelope import Envelope
from shared.topology import ALERT_ROUTING_KEY

MESSAGE_TYPE = "openfero.alert"


class Unavailable(Exception):
    """The alerts could not be stored durably; the sender should try again."""


def to_message(envelope: Envelope, timestamp: datetime) -> aio_pika.Message:
    alert = envelope.alert
    return aio_pika.Message(
        envelope.to_json(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=envelope.id,
        type=MESSAGE_TYPE,
        timestamp=timestamp,
        # Copied out of the body so that operators and tools can filter
        # without decoding it.
        headers={"alertname": alert.alertname, "status": alert.status, "fingerprint": alert.fingerprint},
    )


class Publisher:
    def __init__(self, link: BrokerLink, timeout_s: float):
        self.link = link
        self.timeout_s = timeout_s

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Return once the broker has confirmed every envelope; else raise Unavailable.

        Publishes that fail because the connection dropped are tried again,
        once it is back, until ``timeout_s`` has passed. An unconfirmed
        publish may still have reached the queue: trying again (here, or
        by the sender after a 503) then duplicates it, which the
        dispatcher's deterministic Job names make harmless.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        pending = list(envelopes)
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    await self.link.ready.wait()
                    pending = await self._publish_once(pending)
            except TimeoutError:
                raise Unavailable(f"the broker did not confirm within {self.timeout_s:g} s") from None
            if not pending:
                return
            await asyncio.sleep(0.05)  # the link notices the lost connection and reconnects

    async def _publish_once(self, envelopes: list[Envelope]) -> list[Envelope]:
        """Publish all; return those that failed in a way that trying again may mend."""
        declared = self.link.declared
        if declared is None:
            return envelopes
        exchange = declared.exchange
        now = datetime.now(timezone.utc)
        results = await asyncio.gather(
            *(exchange.publish(to_message(e, now), routing_key=ALERT_ROUTING_KEY, mandatory=True) for e in envelopes),
            return_exceptions=True,
        )
        failed = []
        for envelope, result in zip(envelopes, results, strict=True):
            if isinstance(result, DeliveryError):
                # Returned as unroutable or refused by the broker: not a blip.
                raise Unavailable(f"the broker refused or returned the message: {result}")
            if isinstance(result, BaseException):
                failed.append(envelope)
        return failed
