"""What the outcome leader writes about a Job's end besides the Job: the Event and the record.

Both may be written twice for one Job (a leader that died after writing
them but before removing the Job's finalizer, whose successor writes them
again), and both are built so that twice is once: the Event's name comes
from the Job's uid, so the second create finds it (409); the record's
message id is the Job's uid, by which ``openfero history`` keeps one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import aio_pika
import orjson
from kubernetes.client import ApiClient

from dispatcher.operarii import GROUP, PLURAL, VERSION
from dispatcher.outcomes import DefinitionRef, Ending, JobView, event
from dispatcher.requesting import call
from shared import headers as h
from shared.broker import BrokerLink
from shared.confirming import publish_confirmed
from shared.topology import OUTCOME_ROUTING_KEY

log = logging.getLogger("openfero.dispatcher")

_PUBLISH_TIMEOUT_S = 10.0


def definition_path(ref: DefinitionRef) -> str:
    if ref.kind == "Operarius":
        return f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{PLURAL}/{ref.name}"
    return f"/api/v1/namespaces/{ref.namespace}/configmaps/{ref.name}"


class EventWriter:
    """Creates the Event of a Job's end on its definition (blocking)."""

    def __init__(self, api_client: ApiClient, identity: str, timeout_s: float):
        self.api_client = api_client
        self.identity = identity
        self.timeout_s = timeout_s

    def write(self, view: JobView, ended: Ending, involved: dict[str, Any] | None = None) -> bool:
        """True once the Event exists. ``involved``: the definition object, when already read."""
        ref = view.definition
        if ref is None:
            return True  # a Job whose definition annotation was changed: nothing to attach it to
        if involved is None:
            got = call(self.api_client, "GET", definition_path(ref), self.timeout_s)
            if got.status == 404:
                return True  # the definition is gone; the Job and the record still say it
            if not got.ok:
                log.warning("could not read %s %s/%s for its Event: %s", ref.kind, ref.namespace, ref.name, got, extra={"event": "outcome.event_failed", "job": view.name})
                return False
            involved = got.body
        body = event(view, ended, involved, self.identity, datetime.now(timezone.utc))
        created = call(self.api_client, "POST", f"/api/v1/namespaces/{ref.namespace}/events", self.timeout_s, body)
        if created.ok or created.status == 409:  # 409: written before, by us or a predecessor
            return True
        log.warning("could not create the Event: %s", created, extra={"event": "outcome.event_failed", "job": view.name})
        return False


class RecordPublisher:
    """Publishes outcome records to the outcome stream, each confirmed."""

    def __init__(self, link: BrokerLink):
        self.link = link

    async def publish(self, record: dict[str, Any]) -> None:
        """Return once the broker confirmed it; raises NotConfirmed after the timeout."""
        await publish_confirmed(self.link, [(record_message(record), OUTCOME_ROUTING_KEY)], _PUBLISH_TIMEOUT_S)


def record_message(record: dict[str, Any]) -> aio_pika.Message:
    """An outcome record as the message the outcome stream keeps."""
    return aio_pika.Message(
        orjson.dumps(record),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=record["uid"] or record.get("job", ""),
        type="openfero.outcome",
        headers={h.ALERTNAME: record["alertname"], h.FINGERPRINT: record["fingerprint"], h.OUTCOME: record["outcome"]},
    )
