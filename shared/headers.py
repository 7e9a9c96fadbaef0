"""Names of the message headers openfero sets, shared by the dispatcher and operator tools, and
how headers read from the broker are written back. No I/O here.

Set by ingest on every alert message: ``alertname``, ``status``, ``fingerprint``.

Set by the dispatcher when it schedules a retry or dead-letters a message
(the body is never changed):
"""

from decimal import Decimal
from typing import Any

ALERTNAME = "alertname"
STATUS = "status"
FINGERPRINT = "fingerprint"

ATTEMPTS = "openfero-attempts"  # attempts made so far, the first one included
ERROR = "openfero-error"  # the last error, in words
ERROR_CLASS = "openfero-error-class"  # InvalidEnvelope, RenderError, ApiRejected, ApiUnavailable ...
HTTP_STATUS = "openfero-http-status"  # the API's status code, where there was one
FIRST_FAILURE = "openfero-first-failure"  # RFC 3339 UTC
LAST_FAILURE = "openfero-last-failure"
WORKER = "openfero-worker"  # host/pid of the dispatcher that made the last attempt
DEAD_REASON = "openfero-dead-reason"  # why it was dead-lettered: permanent, retries-exhausted

# Set by the dispatcher on an alert it puts in the wait or parked queue (storm control), and by
# the wait leader on one it releases:
DEFINITION = "openfero-definition"  # "<source>/<key>" of the definition
TARGET = "openfero-target"  # the target it is for ("" for the whole definition)
LIMIT = "openfero-limit"  # the definition's concurrency limit; absent when it waits for the global limit
RECEIVED = "openfero-received"  # when ingest received the alert (its envelope's receivedAt): oldest first
COOLDOWN_TARGET = "openfero-cooldown-target"  # with a cool-down: its target ...
COOLDOWN_SECONDS = "openfero-cooldown-seconds"  # ... and how long it lasts
JOB = "openfero-job"  # the Job it would create
WAITING_SINCE = "openfero-waiting-since"  # RFC 3339 UTC, when it first waited
PARKED_AT = "openfero-parked-at"  # RFC 3339 UTC
ADMITTED = "openfero-admitted"  # set by the wait leader: create the Job, its slot is taken

# Set by `openfero dlq replay` and `openfero replay` on what they republish:
REPLAYED_AT = "openfero-replayed-at"  # RFC 3339 UTC
REPLAYED_FROM = "openfero-replayed-from"  # "dead-letter-queue" or "archive"
RUN_ID = "openfero-run-id"  # with --force: a new run, so new Job names

# Set by the dispatcher on an outcome message, with ALERTNAME and FINGERPRINT:
OUTCOME = "openfero-outcome"  # Succeeded, Failed or Deleted


def writable(value: Any) -> Any:
    """A header value as read from the broker, in a form the client library can write back.

    Headers are whatever a publisher put there. pamqp reads a text header
    that is not UTF-8 as bytes, but writes only bytearray: copied as it was
    read, such a header could never be republished (a retry, a dead letter,
    a replay). A number it cannot write (an integer beyond 64 bits, a
    decimal) becomes its text. Everything else it reads, it writes.
    """
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: writable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [writable(item) for item in value]
    return value
