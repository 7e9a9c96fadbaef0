"""The dispatcher's metrics."""

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S

HANDLED = Counter(
    "openfero_messages_handled_total",
    "Messages handled, by outcome (created, duplicate, no_definition, retried, dead_lettered) and alertname.",
    ["outcome", "alertname"],
)
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
REFUSED = Counter(
    "openfero_alerts_refused_total",
    "Alerts refused for their own data, by reason: env_name_collision (two labels that map to one "
    "OPENFERO_ variable), missing_value (a label or annotation the definition reads is absent), "
    "too_large (the alert's labels make the Job too large).",
    ["reason"],
)
JOBS_CREATED = Counter(
    "openfero_jobs_created_total",
    "Jobs created (a duplicate suppressed is not one); the Go original's counter, without labels as there.",
)
