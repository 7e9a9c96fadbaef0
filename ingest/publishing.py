"""Publishing a webhook's alerts with broker confirms, all or nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

import aio_pika

from shared import headers as h
from shared.broker import BrokerLink
from shared.confirming import NotConfirmed, publish_confirmed
from shared.envelope import Envelope
from shared.topology import ALERT_ROUTING_KEY

log = logging.getLogger("openfero.ingest")

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
        headers={h.ALERTNAME: alert.alertname, h.STATUS: alert.status, h.FINGERPRINT: alert.fingerprint},
    )


class Publisher:
    def __init__(self, link: BrokerLink, timeout_s: float):
        self.link = link
        self.timeout_s = timeout_s

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Return once the broker has confirmed every envelope; else raise Unavailable.

        A nack, a returned message, a lost channel or connection: the
        unconfirmed envelopes are published again, on a fresh channel or
        once the link has reconnected, until ``timeout_s`` has passed
        (``shared.confirming``). So a leader election on the broker costs a
        webhook some latency, not a 503. An unconfirmed publish may still
        have reached the queue: trying again (here, or by the sender after
        a 503) then duplicates it, which the dispatcher's deterministic Job
        names make harmless.
        """
        now = datetime.now(timezone.utc)
        messages = [(to_message(e, now), ALERT_ROUTING_KEY) for e in envelopes]
        failed: list[str] = []
        try:
            await publish_confirmed(self.link, messages, self.timeout_s, failed)
        except NotConfirmed as exc:
            raise Unavailable(str(exc)) from None
        if failed:
            log.info(
                "stored after %d failed attempts: %s",
                len(failed),
                failed[-1],
                extra={"event": "publish.retried", "attempts": len(failed) + 1, "reasons": sorted(set(failed)), "alerts": len(envelopes)},
            )
