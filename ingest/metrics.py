"""Ingest's metrics."""

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S

WEBHOOKS = Counter(
    "openfero_webhooks_total",
    "Webhooks received, by outcome: accepted, rejected (bad input), unavailable (503, not stored), "
    "busy (503, too much in flight), unauthorized.",
    ["outcome"],
)
REJECTED = Counter("openfero_webhooks_rejected_total", "Webhooks refused for bad input, by reason.", ["reason"])
ALERTS = Counter("openfero_alerts_received_total", "Alerts received, by outcome: accepted or unavailable.", ["outcome"])
AUTH_FAILURES = Counter("openfero_auth_failures_total", "Webhook requests refused for missing or wrong credentials.")
PUBLISH_SECONDS = Histogram(
    "openfero_publish_duration_seconds",
    "Time from a webhook's arrival until the broker confirmed all its alerts (or gave up).",
    buckets=LATENCY_BUCKETS_S,
)
QUEUE_MESSAGES = Gauge("openfero_queue_messages", "Messages ready in a queue (work, dead), as ingest last saw it.", ["queue"])
QUEUE_CONSUMERS = Gauge("openfero_queue_consumers", "Consumers of a queue (work, dead), as ingest last saw it.", ["queue"])
CONNECTIONS = Gauge("openfero_http_connections", "Client connections open now.")
CONNECTIONS_CLOSED = Counter(
    "openfero_http_connections_closed_total",
    "Client connections ingest closed itself, by reason: too_many (over OPENFERO_MAX_CONNECTIONS), "
    "header_timeout, body_timeout.",
    ["reason"],
)
