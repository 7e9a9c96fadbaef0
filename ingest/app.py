"""The webhook's HTTP surface.

POST /alerts       an Alertmanager webhook -> 200 once stored, 4xx bad input, 503 retry
GET  /alerts       200 (Alertmanager and the Go original probe it)
GET  /healthz      200 while the process runs
GET  /readiness    200 while connected to the broker, else 503
GET  /metrics      Prometheus metrics
GET  /openapi.json this API, described

Every error answer is JSON: {"error": "<what is wrong>", "status": <code>}.
Only POST /alerts asks for credentials (OPENFERO_AUTH); probes and metrics stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from ingest import metrics
from ingest.auth import Authenticator
from ingest.limits import Limits, LimitExceeded
from ingest.openapi import OPENAPI
from ingest.publishing import Publisher, Unavailable
from ingest.queues import watch_queues
from shared.broker import BrokerLink
from shared.envelope import InvalidWebhook, envelopes_from_webhook
from shared.loop import running_loop_name
from shared.metrics import metrics_handler
from shared.settings import BrokerSettings, IngestSettings

log = logging.getLogger("openfero.ingest")

LINK = web.AppKey("link", BrokerLink)
PUBLISHER = web.AppKey("publisher", Publisher)
SETTINGS = web.AppKey("settings", IngestSettings)
LIMITS = web.AppKey("limits", Limits)
AUTH = web.AppKey("auth", Authenticator)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


def reject(status: int, reason: str, message: str) -> web.Response:
    metrics.WEBHOOKS.labels("rejected").inc()
    metrics.REJECTED.labels(reason).inc()
    return error(status, message)


@web.middleware
async def json_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Answer every error in JSON: aiohttp's own (404, 405, 413 ...) and any bug (500)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason)
    except Exception:
        log.exception("request failed", extra={"event": "request.crashed", "path": request.path})
        return error(500, "internal error; the alerts of this request were not stored")


async def post_alerts(request: web.Request) -> web.Response:
    app = request.app
    challenge = app[AUTH].check(request.headers.get("Authorization"))
    if challenge is not None:
        metrics.WEBHOOKS.labels("unauthorized").inc()
        metrics.AUTH_FAILURES.inc()
        return error(401, "missing or wrong credentials", {"WWW-Authenticate": challenge})
    limit = app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return reject(413, "too_large", f"body of {request.content_length} bytes is over the limit of {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return reject(413, "too_large", f"body is over the limit of {limit} bytes")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return reject(400, "not_json", f"body is not JSON: {exc}")
    try:
        envelopes = envelopes_from_webhook(payload)
        app[LIMITS].check(envelopes)
    except InvalidWebhook as exc:
        return reject(422, "invalid", str(exc))
    except LimitExceeded as exc:
        return reject(exc.status, exc.reason, str(exc))
    if envelopes:
        started = time.perf_counter()
        try:
            with app[LIMITS].in_flight(len(envelopes)):
                await app[PUBLISHER].publish(envelopes)
        except LimitExceeded as exc:
            metrics.WEBHOOKS.labels("busy").inc()
            log.warning("webhook refused: %s", exc, extra={"event": "webhook.busy", "alerts": len(envelopes)})
            return error(503, f"busy, retry: {exc}")
        except Unavailable as exc:
            metrics.WEBHOOKS.labels("unavailable").inc()
            metrics.ALERTS.labels("unavailable").inc(len(envelopes))
            log.warning("webhook not stored: %s", exc, extra={"event": "webhook.unavailable", "alerts": len(envelopes)})
            return error(503, f"alerts not stored, retry: {exc}")
        finally:
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
    metrics.WEBHOOKS.labels("accepted").inc()
    metrics.ALERTS.labels("accepted").inc(len(envelopes))
    # One line per alert, built only when it will be written: this is the hot path.
    for e in envelopes if log.isEnabledFor(logging.INFO) else ():
        log.info(
            "alert accepted",
            extra={
                "event": "alert.accepted",
                "message_id": e.id,
                "fingerprint": e.alert.fingerprint,
                "alertname": e.alert.alertname,
                "status": e.alert.status,
            },
        )
    return web.json_response({"accepted": len(envelopes)})


async def get_alerts(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    if request.app[LINK].ready.is_set():
        return web.json_response({"status": "ready"})
    return error(503, "not connected to the broker")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def create_app(broker: BrokerSettings, ingest: IngestSettings) -> web.Application:
    app = web.Application(client_max_size=ingest.max_body_bytes, middlewares=[json_errors])
    link = BrokerLink(broker)
    app[LINK] = link
    app[PUBLISHER] = Publisher(link, ingest.publish_timeout_s)
    app[SETTINGS] = ingest
    app[LIMITS] = Limits(ingest)
    app[AUTH] = Authenticator.from_settings(ingest)

    async def broker_connection(app: web.Application) -> AsyncIterator[None]:
        log.info(
            "ingest starting",
            extra={"event": "ingest.starting", "addr": ingest.addr, "event_loop": running_loop_name(), "prefix": broker.queue_prefix},
        )
        tasks = [
            asyncio.create_task(link.run(), name="broker-link"),
            asyncio.create_task(watch_queues(link), name="queue-counts"),
        ]
        yield
        await link.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(broker_connection)
    app.router.add_post("/alerts", post_alerts)
    app.router.add_get("/alerts", get_alerts)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readiness", readiness)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi)
    return app
