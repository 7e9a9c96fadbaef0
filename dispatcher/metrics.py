"""The dispatcher's metrics."""

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S

HANDLED = Counter(
    "openfero_messages_handled_total",
    "Messages handled, by outcome (created, duplicate, no_definition, retried, dead_lettered) and alertname: "
    "alertnames a definition names, cut to 100 characters, each on its own; all others as 'other'.",
    ["outcome", "alertname"],
)
# Alertnames come from whoever can post a webhook: only those a definition
# names (which people chose) get series of their own, so /metrics stays bounded.
OTHER = "other"
ALERTNAME_CHARS = 100


def alertname_label(alertname: str) -> str:
    return alertname[:ALERTNAME_CHARS]
RETRIES = Counter("openfero_retries_total", "Retries scheduled, by delay tier (seconds).", ["delay"])
JOB_CREATE_SECONDS = Histogram(
    "openfero_job_create_duration_seconds",
    "Time of one Job create call to the Kubernetes API, failures included.",
    buckets=LATENCY_BUCKETS_S,
)
DEFINITIONS = Gauge("openfero_definitions_loaded", "Definitions known, by kind (ConfigMap, Operarius).", ["kind"])
KUBE_API_UP = Gauge(
    "openfero_kube_api_up", "1 while the list+watch of a kind of definition works, else 0.", ["kind"]
)
