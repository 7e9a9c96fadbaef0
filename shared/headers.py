"""Names of the message headers openfero sets, shared by the dispatcher and operator tools.

Set by ingest on every alert message: ``alertname``, ``status``, ``fingerprint``.

Set by the dispatcher when it schedules a retry or dead-letters a message
(the body is never changed):
"""

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

# Set by `openfero dlq replay` and `openfero replay` on what they republish:
REPLAYED_AT = "openfero-replayed-at"  # RFC 3339 UTC
REPLAYED_FROM = "openfero-replayed-from"  # "dead-letter-queue" or "archive"
RUN_ID = "openfero-run-id"  # with --force: a new run, so new Job names
