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


def to_message(envelope: Envelope) -> aio_pika.Message:
    alert = envelope.alert
    return aio_pika.Message(
        envelope.to_json(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=envelope.id,
        type=MESSAGE_TYPE,
        timestamp=datetime.now(timezone.utc),
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

        An unconfirmed publish may still have reached the queue: the sender's
        retry then duplicates it, which the dispatcher's deterministic Job
        names make harmless.
        """
        declared = self.link.declared
        if not self.link.ready.is_set() or declared is None:
            raise Unavailable("not connected to the broker")
        exchange = declared.exchange
        publishes = [
            exchange.publish(to_message(e), routing_key=ALERT_ROUTING_KEY, mandatory=True) for e in envelopes
        ]
        try:
            async with asyncio.timeout(self.timeout_s):
                results = await asyncio.gather(*publishes, return_exceptions=True)
        except TimeoutError:
            raise Unavailable(f"the broker did not confirm within {self.timeout_s:g} s") from None
        for result in results:
            if isinstance(result, DeliveryError):
                raise Unavailable(f"the broker refused or returned the message: {result}") from None
            if isinstance(result, BaseException):
                # Connection or channel lost mid-publish, or anything else:
                # the alert is not known to be stored, so the sender retries.
                raise Unavailable(f"publish failed: {result!r}") from None
