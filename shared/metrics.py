"""Prometheus metrics shared by both services, and the /metrics handler.

Each service defines its own metrics next to its code (ingest.metrics,
dispatcher.metrics); names follow Prometheus' conventions: a unit suffix
(`_seconds`), `_total` for counters, an `openfero_` prefix. `/metrics` is
prometheus_client's own aiohttp handler: it speaks OpenMetrics to a scraper
that asks for it and compresses for one that accepts gzip.
"""

from __future__ import annotations

import os
from importlib import metadata

from prometheus_client import REGISTRY, Gauge, disable_created_metrics
from prometheus_client.aiohttp import make_aiohttp_handler

# The *_created series double every counter and histogram for little use.
disable_created_metrics()

# Broker publishes and Job creates take milliseconds; the tail reaches the timeouts.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BROKER_CONNECTED = Gauge("openfero_broker_connected", "1 while connected to the broker, else 0.")


def _version() -> str:
    try:
        return metadata.version("openfero")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO = Gauge("openfero_build_info", "Always 1; the labels say which openfero runs.", ["version", "revision"])
# The image sets OPENFERO_REVISION from its build argument (the git commit it was built from).
BUILD_INFO.labels(_version(), os.environ.get("OPENFERO_REVISION") or "unknown").set(1)

metrics_handler = make_aiohttp_handler(REGISTRY)
