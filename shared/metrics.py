"""Prometheus metrics shared by both services, and the /metrics handler.

Each service defines its own metrics next to its code (ingest.metrics,
dispatcher.metrics); names follow Prometheus' conventions: a unit suffix
(`_seconds`), `_total` for counters, an `openfero_` prefix.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, disable_created_metrics, generate_latest

# The *_created series double every counter and histogram for little use.
disable_created_metrics()

# Broker publishes and Job creates take milliseconds; the tail reaches the timeouts.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BROKER_CONNECTED = Gauge("openfero_broker_connected", "1 while connected to the broker, else 0.")


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
