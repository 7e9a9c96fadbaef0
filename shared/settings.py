"""Settings, read from the environment once at start-up, into the types the code uses.

Each concern has a frozen dataclass; every field names its environment
variable, its unit and why its default is what it is. A value is parsed
once, in ``load()``, into its real type (a ``HostPort``, a tuple of seconds,
one word of a few): the code that uses it never parses or checks it again.
Nothing here is global: ``load(cls)`` builds an instance and the caller
passes it on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

T = TypeVar("T")

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class SettingsError(ValueError):
    """A setting holds a value that cannot be used."""


class HostPort(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- parsers: text of an environment variable -> the value the code uses; ValueError says why not


def host_port(text: str) -> HostPort:
    """``host:port``; an empty host is every address (0.0.0.0)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port, the port a number up to 65535")
    return HostPort(host.strip("[]") or "0.0.0.0", int(port))


def one_of(*choices: str) -> Callable[[str], str]:
    """One of ``choices``, any case, as the choice is written."""

    def parse(text: str) -> str:
        for choice in choices:
            if text.strip().lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}")

    return parse


def positive_seconds(text: str) -> tuple[float, ...]:
    """Seconds, comma-separated, at least one, all above zero; sorted, each once."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError("expected seconds, comma-separated") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError("needs at least one positive number of seconds")
    return tuple(sorted(set(values)))


def service_accounts(text: str) -> frozenset[tuple[str, str]]:
    """``namespace/name`` or a bare ``name`` (any namespace, written ``*``), comma-separated."""
    found = set()
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        namespace, _, name = entry.rpartition("/")
        if not name or "/" in namespace:
            raise ValueError(f"{entry!r} is not namespace/name or name")
        found.add((namespace or "*", name))
    return frozenset(found)


def networks(text: str) -> tuple[Network, ...]:
    """Addresses or networks, comma-separated (10.0.0.0/8, 127.0.0.1)."""
    return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in text.split(",") if a.strip())


def duration_seconds(text: str) -> float:
    """A duration as openfero writes them (90, 90s, 15m, 1h30m, 2d), in seconds, above zero."""
    from shared.durations import parse_duration

    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("expected a duration above zero")
    return seconds


def setting(env: str, default: Any, help: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field read from the environment variable ``env``.

    With ``parse``, ``default`` is written as a user would set the variable
    (and shown so in --help and the README); the field holds what ``parse``
    makes of it. Without, the field is a str, int, float or bool.
    """
    value = default if parse is None else parse(default)
    return field(default=value, metadata={"env": env, "help": help, "parse": parse, "shown": str(default)})


@dataclass(frozen=True)
class BrokerSettings:
    amqp_url: str = setting(
        "OPENFERO_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/",
        "RabbitMQ connection URL.",
    )
    queue_prefix: str = setting(
        "OPENFERO_QUEUE_PREFIX",
        "openfero",
        "Prefix of every exchange and queue name; two installations on one broker need two prefixes.",
    )
    archive_max_age: str = setting(
        "OPENFERO_ARCHIVE_MAX_AGE",
        "7D",
        "How long the alert archive keeps alerts, for time-window replay (RabbitMQ units: "
        "Y, M, D, h, m, s). Applies when the archive is first created.",
    )
    archive_max_bytes: int = setting(
        "OPENFERO_ARCHIVE_MAX_BYTES",
        5 * 1024**3,
        "Most disk the alert archive may use (bytes); the oldest alerts go first. "
        "Applies when the archive is first created.",
    )
    reconnect_max_s: float = setting(
        "OPENFERO_RECONNECT_MAX_SECONDS",
        5.0,
        "Longest pause between two attempts to reach the broker (seconds); "
        "short, because ingest answers 503 until it is connected.",
    )
    quorum_initial_group_size: int = setting(
        "OPENFERO_QUORUM_INITIAL_GROUP_SIZE",
        3,
        "Replicas of each quorum queue and of the archive when openfero creates them: "
        "3 survives the loss of one node. RabbitMQ places fewer on a smaller cluster. "
        "Applies when a queue is first created; existing queues keep theirs (see openfero doctor).",
    )

    def __post_init__(self) -> None:
        if self.quorum_initial_group_size < 1:
            raise SettingsError(f"OPENFERO_QUORUM_INITIAL_GROUP_SIZE={self.quorum_initial_group_size}: needs at least 1")


@dataclass(frozen=True)
class ManagementSettings:
    """RabbitMQ's management HTTP API, which only `openfero doctor` reads."""

    url: str = setting(
        "OPENFERO_MANAGEMENT_URL",
        "",
        "URL of RabbitMQ's management HTTP API (the rabbitmq_management plugin). "
        "Default: the broker host of OPENFERO_AMQP_URL, http, port 15672.",
    )
    username: str = setting(
        "OPENFERO_MANAGEMENT_USERNAME",
        "",
        "User for the management API (needs the monitoring tag). Default: the user of OPENFERO_AMQP_URL.",
    )
    password_file: str = setting(
        "OPENFERO_MANAGEMENT_PASSWORD_FILE",
        "",
        "A file holding the management API password (a mounted Secret).",
    )
    password: str = setting(
        "OPENFERO_MANAGEMENT_PASSWORD",
        "",
        "The management API password, when it does not come from a file. "
        "Default: the password of OPENFERO_AMQP_URL.",
    )


@dataclass(frozen=True)
class IngestSettings:
    addr: HostPort = setting(
        "OPENFERO_INGEST_ADDR",
        "0.0.0.0:8080",
        "host:port the webhook listens on.",
        host_port,
    )
    max_body_bytes: int = setting(
        "OPENFERO_MAX_BODY_BYTES",
        16 * 1024 * 1024,
        "Largest webhook body accepted (bytes); larger bodies get 413. Alertmanager 0.25 sent "
        "10,000 kube-prometheus alerts in 10.8 MB, so 16 MiB holds OPENFERO_MAX_ALERTS_PER_WEBHOOK "
        "such alerts with room to spare, while reading a hostile body of that size stays "
        "within the pod's memory (README, Limits).",
    )
    max_alerts: int = setting(
        "OPENFERO_MAX_ALERTS_PER_WEBHOOK",
        10000,
        "Most alerts one webhook may hold; more get 413 (Alertmanager's max_alerts keeps groups below it).",
    )
    max_labels: int = setting(
        "OPENFERO_MAX_LABELS_PER_ALERT",
        100,
        "Most labels (and most annotations) one alert may have; more get 422.",
    )
    max_label_bytes: int = setting(
        "OPENFERO_MAX_LABEL_BYTES",
        16384,
        "Longest label or annotation, name and value together, and longest other field of an alert "
        "(bytes of UTF-8); longer gets 422.",
    )
    max_group_context_bytes: int = setting(
        "OPENFERO_MAX_GROUP_CONTEXT_BYTES",
        8192,
        "Most group context one alert's message may carry (bytes of UTF-8): groupKey, receiver, "
        "externalURL, status and version, and the entries of groupLabels, commonLabels and "
        "commonAnnotations whose value the alert does not share (Alertmanager's always share theirs). "
        "More gets 422; so does a webhook whose alerts would carry more of it, together, than "
        "the webhook's own size.",
    )
    max_message_bytes: int = setting(
        "OPENFERO_MAX_MESSAGE_BYTES",
        65536,
        "Largest message one alert may become (bytes of JSON); a larger alert gets 422. "
        "Alertmanager's alerts become messages of about 1 to 2 kB.",
    )
    header_timeout_s: float = setting(
        "OPENFERO_HEADER_TIMEOUT_SECONDS",
        10.0,
        "How long a client may take to send a request's headers, counted from the connection or "
        "from the request's first byte (seconds); then the connection is closed with 408.",
    )
    body_timeout_s: float = setting(
        "OPENFERO_BODY_TIMEOUT_SECONDS",
        30.0,
        "How long a client may take to send a webhook's body once its headers are in (seconds); "
        "then it gets 408 and the connection is closed. 16 MiB at 1 MB/s takes 17 s.",
    )
    max_connections: int = setting(
        "OPENFERO_MAX_CONNECTIONS",
        256,
        "Most client connections open at once; one more gets 503 and is closed, so that idle or "
        "slow clients cannot take up memory without end. Alertmanager opens one per group it "
        "sends at the same moment.",
    )
    max_inflight_alerts: int = setting(
        "OPENFERO_MAX_INFLIGHT_ALERTS",
        20000,
        "Most alerts being stored at once, over all webhooks; a webhook that would go past it gets 503 at "
        "once, so that an alert storm cannot exhaust memory.",
    )
    auth_mode: Literal["none", "basic", "bearer"] = setting(
        "OPENFERO_AUTH",
        "none",
        "Webhook authentication: none, basic or bearer (what Alertmanager's basic_auth and authorization send).",
        one_of("none", "basic", "bearer"),
    )
    auth_username: str = setting("OPENFERO_AUTH_USERNAME", "", "The user name for basic auth.")
    auth_password_file: str = setting(
        "OPENFERO_AUTH_PASSWORD_FILE", "", "A file holding the basic auth password (a mounted Secret)."
    )
    auth_password: str = setting(
        "OPENFERO_AUTH_PASSWORD", "", "The basic auth password, when it does not come from a file."
    )
    auth_token_file: str = setting("OPENFERO_AUTH_TOKEN_FILE", "", "A file holding the bearer token (a mounted Secret).")
    auth_token: str = setting("OPENFERO_AUTH_TOKEN", "", "The bearer token, when it does not come from a file.")
    tls_cert_file: str = setting(
        "OPENFERO_TLS_CERT_FILE", "", "Serve HTTPS with this certificate (PEM) and OPENFERO_TLS_KEY_FILE; empty: HTTP."
    )
    tls_key_file: str = setting("OPENFERO_TLS_KEY_FILE", "", "The TLS private key (PEM).")
    publish_timeout_s: float = setting(
        "OPENFERO_PUBLISH_TIMEOUT_SECONDS",
        5.0,
        "How long a webhook waits for the broker to confirm its alerts before answering "
        "503 (seconds); well below Alertmanager's own timeouts, so it retries soon. A webhook of "
        "more than 50 alerts is published 50 at a time, and the wait is for each 50.",
    )



@dataclass(frozen=True)
class KubeSettings:
    definitions_namespace: str = setting(
        "OPENFERO_DEFINITIONS_NAMESPACE",
        "",
        "Namespace holding the Job definitions. Default: the namespace openfero runs in, "
        "else the kubeconfig context's, else 'default'.",
    )
    job_namespace: str = setting(
        "OPENFERO_JOB_NAMESPACE",
        "",
        "Namespace the Jobs are created in. Default: the definitions namespace.",
    )
    definition_selector: str = setting(
        "OPENFERO_DEFINITION_SELECTOR",
        "app=openfero",
        "Label selector of the ConfigMaps that hold Job definitions.",
    )
    definitions_path: str = setting(
        "OPENFERO_DEFINITIONS_PATH",
        "",
        "A file or folder of ConfigMap manifests to read definitions from instead of the "
        "cluster (for trying openfero without one). Empty: watch the cluster.",
    )
    request_timeout_s: float = setting(
        "OPENFERO_KUBE_TIMEOUT_SECONDS",
        10.0,
        "Timeout of one Kubernetes API request (seconds).",
    )
    watch_timeout_s: int = setting(
        "OPENFERO_WATCH_TIMEOUT_SECONDS",
        300,
        "How long one watch of the definitions runs before it is renewed (seconds); "
        "the API server's own limit is about 30 to 60 minutes.",
    )
    own_namespace: str = setting(
        "OPENFERO_DISPATCHER_NAMESPACE",
        "",
        "The namespace the dispatcher runs in (the manifests pass metadata.namespace through "
        "the downward API). Default: the in-cluster service account's namespace.",
    )
    own_service_account: str = setting(
        "OPENFERO_DISPATCHER_SERVICE_ACCOUNT",
        "",
        "The dispatcher's own service account (the manifests pass spec.serviceAccountName): "
        "no Job may run as it in its namespace, so that no definition borrows the dispatcher's rights.",
    )
    forbidden_service_accounts: frozenset[tuple[str, str]] = setting(
        "OPENFERO_FORBIDDEN_SERVICE_ACCOUNTS",
        "",
        "Service accounts no Job may run as, comma-separated: namespace/name, or a bare name for "
        "that name in any namespace. A definition that asks for one is a permanent failure.",
        service_accounts,
    )

    def forbidden_accounts(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) pairs, namespace "*" for any; the dispatcher's own included."""
        found = set(self.forbidden_service_accounts)
        namespace = self.own_namespace
        if not namespace and SERVICE_ACCOUNT_NAMESPACE_FILE.exists():
            namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
        if self.own_service_account:
            found.add((namespace or "*", self.own_service_account))
        return frozenset(found)


@dataclass(frozen=True)
class DispatcherSettings:
    prefetch: int = setting(
        "OPENFERO_PREFETCH",
        64,
        "Messages one dispatcher holds unacknowledged at once; bounds its memory and "
        "how many alerts a crash hands back to the queue.",
    )
    kube_concurrency: int = setting(
        "OPENFERO_KUBE_CONCURRENCY",
        16,
        "Kubernetes API calls one dispatcher makes at once (threads of the blocking client).",
    )
    job_ttl_s: int = setting(
        "OPENFERO_JOB_TTL_SECONDS",
        86400,
        "ttlSecondsAfterFinished given to Jobs whose definition sets none (seconds); "
        "a day keeps the Job, and so its duplicate suppression, past Alertmanager's "
        "4 h repeat interval.",
    )
    dry_run: bool = setting(
        "OPENFERO_DRY_RUN",
        False,
        "Print each rendered Job as YAML instead of creating it.",
    )
    stall_s: float = setting(
        "OPENFERO_STALL_SECONDS",
        120.0,
        "A dispatcher that holds messages, or sees messages waiting, and settles none for this long "
        "is stuck: its /healthz answers 503 so that Kubernetes restarts it (seconds). Well above "
        "the slowest settling of one message (an API call and a publish, each with its timeout).",
    )


@dataclass(frozen=True)
class RetrySettings:
    delays_s: tuple[float, ...] = setting(
        "OPENFERO_RETRY_DELAYS_SECONDS",
        "1,5,30,120,600,1200,1800",
        "The delay tiers of retries (seconds, comma-separated); each is a queue of its own, so a "
        "long wait never holds up a short one. The n-th retry waits the n-th tier, later ones the last.",
        positive_seconds,
    )
    max_attempts: int = setting(
        "OPENFERO_RETRY_MAX_ATTEMPTS",
        8,
        "Attempts before a message that keeps failing is dead-lettered; with the default tiers "
        "the first and 7 retries span about an hour.",
    )
    operator_min_delay_s: float = setting(
        "OPENFERO_RETRY_OPERATOR_MIN_SECONDS",
        30.0,
        "Shortest wait after a failure only an operator can fix (403 Forbidden, namespace not found): "
        "retries start at the first tier this long (seconds).",
    )


@dataclass(frozen=True)
class ServiceSettings:
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "OPENFERO_LOG_LEVEL", "INFO", "Log level: DEBUG, INFO, WARNING or ERROR.", one_of("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_format: Literal["json", "text"] = setting(
        "OPENFERO_LOG_FORMAT", "json", "json (one object a line) or text.", one_of("json", "text")
    )
    metrics_addr: HostPort = setting(
        "OPENFERO_METRICS_ADDR",
        "0.0.0.0:9091",
        "host:port of the dispatcher's /metrics and /healthz (ingest serves them on its own port).",
        host_port,
    )
    shutdown_grace_s: float = setting(
        "OPENFERO_SHUTDOWN_GRACE_SECONDS",
        20.0,
        "After SIGTERM, how long in-flight work may finish before the rest is handed back "
        "(seconds); below Kubernetes' default grace period of 30 s.",
    )
    event_loop: Literal["uvloop", "asyncio"] = setting(
        "OPENFERO_EVENT_LOOP",
        "uvloop",
        "uvloop (faster: see Performance) or asyncio (the standard library's loop).",
        one_of("uvloop", "asyncio"),
    )



@dataclass(frozen=True)
class ConsoleSettings:
    """The operator's console (`openfero console`): where it listens, who may use it, what it shows."""

    addr: HostPort = setting(
        "OPENFERO_CONSOLE_ADDR",
        "127.0.0.1:8081",
        "host:port the console listens on. Loopback by default: on any other address it requires "
        "OPENFERO_CONSOLE_AUTH other than none.",
        host_port,
    )
    auth_mode: Literal["basic", "bearer", "proxy", "none"] = setting(
        "OPENFERO_CONSOLE_AUTH",
        "basic",
        "Who may use the console: basic or bearer (credentials below, compared as ingest compares them), "
        "proxy (trust the user header of an authenticating proxy, only from OPENFERO_CONSOLE_PROXY_ADDRESSES), "
        "or none (refused unless the console listens on a loopback address).",
        one_of("basic", "bearer", "proxy", "none"),
    )
    auth_username: str = setting("OPENFERO_CONSOLE_AUTH_USERNAME", "", "The user name for basic auth.")
    auth_password_file: str = setting(
        "OPENFERO_CONSOLE_AUTH_PASSWORD_FILE", "", "A file holding the basic auth password (a mounted Secret)."
    )
    auth_password: str = setting(
        "OPENFERO_CONSOLE_AUTH_PASSWORD", "", "The basic auth password, when it does not come from a file."
    )
    auth_token_file: str = setting(
        "OPENFERO_CONSOLE_AUTH_TOKEN_FILE", "", "A file holding the bearer token (a mounted Secret)."
    )
    auth_token: str = setting("OPENFERO_CONSOLE_AUTH_TOKEN", "", "The bearer token, when it does not come from a file.")
    proxy_user_header: str = setting(
        "OPENFERO_CONSOLE_PROXY_USER_HEADER",
        "X-Forwarded-User",
        "With OPENFERO_CONSOLE_AUTH=proxy: the request header that names the user the proxy authenticated.",
    )
    proxy_addresses: tuple[Network, ...] = setting(
        "OPENFERO_CONSOLE_PROXY_ADDRESSES",
        "",
        "With OPENFERO_CONSOLE_AUTH=proxy (required then): the proxy's addresses or networks, comma-separated "
        "(10.0.0.0/8, 127.0.0.1); a request from any other peer is refused, header or not.",
        networks,
    )
    csrf_key_file: str = setting(
        "OPENFERO_CONSOLE_CSRF_KEY_FILE",
        "",
        "A file holding the key that signs the console's CSRF tokens (a mounted Secret), the same for every "
        "replica. Empty: a random key per process, so a form served by one replica is refused by another.",
    )
    read_only: bool = setting(
        "OPENFERO_CONSOLE_READ_ONLY",
        False,
        "Show everything, change nothing: no replay or purge is offered, and every such request gets 403.",
    )
    window_s: float = setting(
        "OPENFERO_CONSOLE_WINDOW",
        "6h",
        "How far back the timeline reads the alert archive when the console starts, and keeps "
        "alerts (a duration: 90m, 6h, 1d).",
        duration_seconds,
    )
    max_alerts: int = setting(
        "OPENFERO_CONSOLE_MAX_ALERTS",
        50000,
        "Most alerts the timeline keeps; the oldest go first. Bounds the console's memory "
        "(about 5 KB an alert with its Job, measured: README, Performance).",
    )
    dead_letters_cache_s: float = setting(
        "OPENFERO_CONSOLE_DEAD_LETTERS_CACHE_SECONDS",
        5.0,
        "How long one reading of the dead-letter queue serves every viewer of this console (seconds); "
        "each reading takes the dead letters and hands them back, as openfero dlq list does.",
    )
    max_streams: int = setting(
        "OPENFERO_CONSOLE_MAX_STREAMS",
        100,
        "Most live pages (server-sent event streams) open at once; one more gets 503.",
    )
    max_body_bytes: int = setting(
        "OPENFERO_CONSOLE_MAX_BODY_BYTES",
        1024 * 1024,
        "Largest form the console accepts (bytes): an alert pasted for a preview, or the ids of the "
        "dead letters an action names (10,000 ids take about 400 KB). Larger bodies get 413.",
    )
    keepalive_timeout_s: float = setting(
        "OPENFERO_CONSOLE_KEEPALIVE_SECONDS",
        75.0,
        "How long an idle HTTP connection stays open between requests (seconds), as ingest's.",
    )
    tls_cert_file: str = setting(
        "OPENFERO_CONSOLE_TLS_CERT_FILE", "", "Serve HTTPS with this certificate (PEM) and OPENFERO_CONSOLE_TLS_KEY_FILE; empty: HTTP."
    )
    tls_key_file: str = setting("OPENFERO_CONSOLE_TLS_KEY_FILE", "", "The TLS private key (PEM).")



@dataclass(frozen=True)
class OutcomeSettings:
    """Following each Job to its end; one dispatcher at a time does it (dispatcher.leading)."""

    track: bool = setting(
        "OPENFERO_TRACK_OUTCOMES",
        True,
        "Follow every Job openfero creates to its end and record its outcome (metrics, Operarius "
        "status, Events, the outcome stream). Jobs get the finalizer openfero.io/outcome so that one "
        "deleted before it finished is still seen; off: no finalizer, no tracking.",
    )
    lease_duration_s: int = setting(
        "OPENFERO_LEASE_DURATION_SECONDS",
        15,
        "How long the outcome leader's Lease holds without renewal before another dispatcher may take "
        "over (whole seconds, as a Lease stores it); client-go's default.",
    )
    lease_renew_deadline_s: float = setting(
        "OPENFERO_LEASE_RENEW_DEADLINE_SECONDS",
        10.0,
        "How long the leader keeps trying to renew before it stops leading (seconds); below the "
        "lease duration, so that it has stopped before anyone else may start.",
    )
    lease_retry_s: float = setting(
        "OPENFERO_LEASE_RETRY_SECONDS",
        2.0,
        "Pause between two attempts to take or renew the Lease (seconds).",
    )

    def __post_init__(self) -> None:
        if self.lease_duration_s < 1:
            raise SettingsError(f"OPENFERO_LEASE_DURATION_SECONDS={self.lease_duration_s}: needs at least 1")
        if not 0 < self.lease_retry_s < self.lease_renew_deadline_s < self.lease_duration_s:
            raise SettingsError(
                "OPENFERO_LEASE_RETRY_SECONDS < OPENFERO_LEASE_RENEW_DEADLINE_SECONDS < OPENFERO_LEASE_DURATION_SECONDS "
                f"is needed (got {self.lease_retry_s:g}, {self.lease_renew_deadline_s:g}, {self.lease_duration_s})"
            )


@dataclass(frozen=True)
class StormSettings:
    """Storm control (dispatcher.storm): what holds for all definitions; each definition asks for its own limits."""

    global_jobs_per_minute: int = setting(
        "OPENFERO_GLOBAL_JOBS_PER_MINUTE",
        120000,
        "At most this many Job creations per minute across all dispatchers; alerts over it wait on "
        "the broker. 0: no limit. The default (2,000 a second) is above what the benchmarks reach.",
    )
    wait_window: int = setting(
        "OPENFERO_WAIT_WINDOW",
        10000,
        "How many waiting alerts the wait leader holds at once to choose from (its prefetch on "
        "<prefix>.wait); those beyond wait their turn in the queue.",
    )
    transit_s: float = setting(
        "OPENFERO_WAIT_TRANSIT_SECONDS",
        30.0,
        "How long a released alert holds its slot before its Job shows up (seconds); after that the "
        "slot counts as free again.",
    )

    def __post_init__(self) -> None:
        if self.global_jobs_per_minute < 0 or self.wait_window < 1 or self.transit_s <= 0:
            raise SettingsError("OPENFERO_GLOBAL_JOBS_PER_MINUTE >= 0, OPENFERO_WAIT_WINDOW >= 1 and OPENFERO_WAIT_TRANSIT_SECONDS > 0 are needed")


@dataclass(frozen=True)
class AlertmanagerSettings:
    """Alertmanager's API v2, where the dispatchers hold a silence while a remediation runs (dispatcher.silencing)."""

    urls: str = setting(
        "OPENFERO_ALERTMANAGER_URLS",
        "",
        "Alertmanager base URLs, comma-separated (http://alertmanager-0.monitoring:9093, with the path of "
        "--web.route-prefix if it has one): every peer of an HA cluster, which gossip silences. A silence is "
        "created on the first that answers and expired on any. Empty: definitions that ask for a silence wait "
        "on the retry schedule until one is configured.",
    )
    auth_mode: str = setting(
        "OPENFERO_ALERTMANAGER_AUTH",
        "none",
        "How openfero authenticates to Alertmanager: none, basic or bearer (Authorization: Bearer).",
    )
    auth_username: str = setting("OPENFERO_ALERTMANAGER_USERNAME", "", "The user name for basic auth.")
    auth_password_file: str = setting(
        "OPENFERO_ALERTMANAGER_PASSWORD_FILE", "", "A file holding the basic auth password (a mounted Secret)."
    )
    auth_password: str = setting(
        "OPENFERO_ALERTMANAGER_PASSWORD", "", "The basic auth password, when it does not come from a file."
    )
    auth_token_file: str = setting(
        "OPENFERO_ALERTMANAGER_TOKEN_FILE", "", "A file holding the bearer token (a mounted Secret)."
    )
    auth_token: str = setting("OPENFERO_ALERTMANAGER_TOKEN", "", "The bearer token, when it does not come from a file.")
    ca_file: str = setting(
        "OPENFERO_ALERTMANAGER_CA_FILE", "", "CA certificates (PEM) that sign Alertmanager's HTTPS certificate; empty: the system's."
    )
    cert_file: str = setting(
        "OPENFERO_ALERTMANAGER_CERT_FILE", "", "A client certificate (PEM) for Alertmanagers that ask for one, with OPENFERO_ALERTMANAGER_KEY_FILE."
    )
    key_file: str = setting("OPENFERO_ALERTMANAGER_KEY_FILE", "", "The client certificate's private key (PEM).")
    timeout_s: float = setting(
        "OPENFERO_ALERTMANAGER_TIMEOUT_SECONDS",
        5.0,
        "Timeout of one request to one Alertmanager (seconds); the next one is tried after it.",
    )
    silence_duration_s: float = setting(
        "OPENFERO_SILENCE_DURATION_SECONDS",
        900.0,
        "How long a silence holds for a Job without activeDeadlineSeconds (seconds), before the margin below: "
        "a remediation still running after this is paged.",
    )
    silence_margin_s: float = setting(
        "OPENFERO_SILENCE_MARGIN_SECONDS",
        300.0,
        "Added to the Job's deadline for the silence's end (seconds): the time a fixed alert takes to resolve "
        "(Prometheus' next evaluations), for silences kept after a success.",
    )

    def url_list(self) -> tuple[str, ...]:
        """The URLs, without a trailing slash; SettingsError for one that is not http(s) or holds credentials."""
        from urllib.parse import urlsplit

        found = []
        for url in (u.strip().rstrip("/") for u in self.urls.split(",")):
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingsError(f"OPENFERO_ALERTMANAGER_URLS: {url!r} is not an http:// or https:// URL")
            if parts.username or parts.password:
                # The URL is written on every silenced Job and in logs: credentials go in their own settings.
                raise SettingsError(
                    f"OPENFERO_ALERTMANAGER_URLS: {parts.hostname!r} carries credentials; use OPENFERO_ALERTMANAGER_PASSWORD_FILE or _TOKEN_FILE"
                )
            if parts.query or parts.fragment:
                raise SettingsError(f"OPENFERO_ALERTMANAGER_URLS: {url!r} may not have a query or fragment")
            found.append(url)
        return tuple(found)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise SettingsError(f"OPENFERO_ALERTMANAGER_TIMEOUT_SECONDS={self.timeout_s:g}: needs more than 0")
        if self.silence_duration_s <= 0 or self.silence_margin_s < 0:
            raise SettingsError("OPENFERO_SILENCE_DURATION_SECONDS needs more than 0 and OPENFERO_SILENCE_MARGIN_SECONDS at least 0")
        if self.auth_mode.strip().lower() not in ("none", "basic", "bearer"):
            raise SettingsError(f"OPENFERO_ALERTMANAGER_AUTH={self.auth_mode!r}: expected none, basic or bearer")
        if bool(self.cert_file) != bool(self.key_file):
            raise SettingsError("a client certificate needs both OPENFERO_ALERTMANAGER_CERT_FILE and OPENFERO_ALERTMANAGER_KEY_FILE")


ALL_GROUPS: tuple[type, ...] = (
    BrokerSettings,
    ManagementSettings,
    IngestSettings,
    KubeSettings,
    DispatcherSettings,
    RetrySettings,
    ServiceSettings,
    ConsoleSettings,
    OutcomeSettings,
    AlertmanagerSettings,
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(raw: str, kind: type | None, parse: Callable[[str], Any] | None, env: str) -> Any:
    try:
        if parse is not None:
            return parse(raw)
        if kind is bool:
            value = raw.strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{env}={raw!r}: {exc}") from None


_KINDS = {"str": str, "int": int, "float": float, "bool": bool}


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from the environment; keyword ``overrides`` win (CLI flags)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = f.metadata["env"]
        if f.name in overrides and overrides[f.name] is not None:
            values[f.name] = overrides[f.name]
        elif env in environ:
            values[f.name] = _parse(environ[env], _KINDS.get(str(f.type)), f.metadata["parse"], env)
    return cls(**values)


def describe(*groups: type) -> list[tuple[str, str, str]]:
    """(variable, default, help) of every setting in ``groups``, for --help and docs."""
    rows = []
    for cls in groups or ALL_GROUPS:
        for f in dataclasses.fields(cls):
            rows.append((f.metadata["env"], f.metadata["shown"], f.metadata["help"]))
    return rows


def help_epilog(*groups: type) -> str:
    """The settings as a --help epilog; click keeps paragraphs after a \\b line as they are."""
    paragraphs = ["Settings (environment variables):"]
    for env, default, text in describe(*groups):
        shown = default if default != "" else "(see text)"
        body = textwrap.fill(text, width=88, initial_indent="    ", subsequent_indent="    ")
        paragraphs.append(f"\b\n{env}  [default: {shown}]\n{body}")
    return "\n\n".join(paragraphs)


def resolve_namespaces(kube: KubeSettings, kubeconfig_namespace: str | None) -> KubeSettings:
    """Fill in the namespace defaults: in-cluster, else kubeconfig context, else 'default'."""
    definitions = kube.definitions_namespace
    if not definitions:
        if SERVICE_ACCOUNT_NAMESPACE_FILE.exists():
            definitions = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
        definitions = definitions or kubeconfig_namespace or "default"
    jobs = kube.job_namespace or definitions
    return dataclasses.replace(kube, definitions_namespace=definitions, job_namespace=jobs)
