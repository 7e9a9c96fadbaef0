"""From a webhook body to the envelopes to publish, limits first. No I/O here.

The order is the point: decode, measure against the limits (ingest.limits),
and only then do the per-alert work (fingerprints, ids, envelopes, their
JSON), so a body over a limit costs its decoding and one pass over it,
never more. Runs on the event loop for small bodies and in a worker process
for large ones (ingest.worker); either way it returns a value, never raises
for what a client sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ingest.limits import LimitExceeded, Limits
from shared.envelope import Envelope, InvalidWebhook, envelopes_from_webhook
from shared.settings import IngestSettings


@dataclass(frozen=True)
class Refused:
    """Why a webhook is not taken: the answer's status, the metric's reason, the message."""

    status: int
    reason: str
    message: str


def read_webhook(body: bytes, settings: IngestSettings) -> list[Envelope] | Refused:
    """The envelopes of a webhook, each already written (``to_json``), or why it is refused."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refused(400, "not_json", f"body is not JSON: {exc}")
    limits = Limits(settings)
    try:
        limits.check_webhook(payload, len(body))
        envelopes = envelopes_from_webhook(payload)
        limits.check_messages(envelopes)
    except InvalidWebhook as exc:
        return Refused(422, "invalid", str(exc))
    except LimitExceeded as exc:
        return Refused(exc.status, exc.reason, str(exc))
    return envelopes


def warm() -> bool:
    """Nothing: run once in a fresh worker so that its imports are done before a webhook needs it."""
    return True
