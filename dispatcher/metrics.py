"""The dispatcher's metrics."""

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S

HANDLED = Counter(
    "openfero_messages_handled_total",
    "Messages handled, by outcome (created, duplicate, no_definition, suppressed, waiting, parked, retried, "
    "dead_lettered) and alertname: "
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

# Outcomes: counted by the leader alone (dispatcher.leading), once per Job, so sums over
# dispatchers are exact. The Go original's two counters carry no labels, as there.
JOBS_SUCCEEDED = Counter(
    "openfero_jobs_succeeded_total",
    "Jobs that succeeded (their Complete condition); the Go original's counter, without labels as there.",
)
JOBS_FAILED = Counter(
    "openfero_jobs_failed_total",
    "Jobs that failed (their Failed condition: BackoffLimitExceeded, DeadlineExceeded, ...); the Go original's counter.",
)
REMEDIATIONS = Counter(
    "openfero_remediations_total",
    "Remediations that ended, by definition (the ConfigMap's or Operarius' name; 'unknown' for one that no longer "
    "exists) and outcome: succeeded, failed, deleted (the Job was deleted before it finished).",
    ["definition", "outcome"],
)
# Kubernetes stamps Jobs in whole seconds: these start at one.
OUTCOME_BUCKETS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
REMEDIATION_SECONDS = Histogram(
    "openfero_remediation_duration_seconds",
    "From the Job's creation to its end, by outcome (succeeded, failed).",
    ["outcome"],
    buckets=OUTCOME_BUCKETS_S,
)
TIME_TO_REMEDIATE_SECONDS = Histogram(
    "openfero_time_to_remediate_seconds",
    "From the alert's startsAt to the end of its Job, by outcome (succeeded, failed).",
    ["outcome"],
    buckets=OUTCOME_BUCKETS_S,
)
LEADER = Gauge("openfero_outcome_leader", "1 while this dispatcher holds the Lease and follows the Jobs, else 0.")

# Silences held in Alertmanager while remediations run (dispatcher.silencing).
SILENCES_CREATED = Counter(
    "openfero_silences_created_total",
    "Silences created in Alertmanager for a remediation (one found again for a retried message is not counted).",
)
SILENCES_EXPIRED_EARLY = Counter(
    "openfero_silences_expired_early_total",
    "Silences openfero expired before their end, by why: failed, deleted, succeeded (after-success expire), "
    "not_created (the Job could not be made), duplicate (another delivery's Job holds its own).",
    ["why"],
)
SILENCE_CREATE_FAILURES = Counter(
    "openfero_silence_create_failures_total",
    "Attempts to create a silence that failed, by reason: unavailable (no Alertmanager answered; the message "
    "is retried), rejected (refused: credentials, URL, or the silence itself), not_configured (no Alertmanager URL).",
    ["reason"],
)

# Storm control (dispatcher.storm).
STORM_HELD = Counter(
    "openfero_alerts_held_total",
    "Alerts put in the wait queue (waiting) or the parked queue (parked), by why (concurrency, global, breaker).",
    ["outcome", "why"],
)
STORM_SUPPRESSED = Counter(
    "openfero_alerts_suppressed_total", "Alerts suppressed by a definition's cool-down (a Job for their target ran within it)."
)
STORM_RELEASED = Counter("openfero_alerts_released_total", "Waiting alerts the wait leader released to the work queue.")
STORM_WAITING = Gauge("openfero_alerts_waiting", "Alerts the wait leader holds in the wait queue (on the leader; 0 elsewhere).")
WAIT_LEADER = Gauge("openfero_wait_leader", "1 while this dispatcher holds the storm Lease and releases waiting alerts, else 0.")
BREAKER_OPEN = Gauge(
    "openfero_breaker_open",
    "1 while a definition's breaker is open or trying one Job (trial), else 0; by definition (its name, cut to 63 characters).",
    ["definition"],
)
