"""The webhook's HTTP surface.

POST /alerts   an Alertmanager webhook -> 200 once stored, 4xx bad input, 503 retry
GET  /alerts   200 (Alertmanager and the Go original probe it)
GET  /healthz  200 while the process runs
GET  /readiness 200 while connected to the broker, else 503

Every error answer is JSON: {"error": "<what is wrong>", "status": <code>}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ingest.publishing import Publisher, Unavailable
from shared.broker import BrokerLink
from shared.envelope import InvalidWebhook, envelopes_from_webhook
from shared.settings import BrokerSettings, IngestSettings

log = logging.getLogger("openfero.ingest")

LINK = web.AppKey("link", BrokerLink)
PUBLISHER = web.AppKey("publisher", Publisher)
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Answer aiohttp's own errors (404, 405, 413 ...) in JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason)


async def post_alerts(request: web.Request) -> web.Response:
    limit = request.app[MAX_BODY_BYTES]
    if request.content_length is not None and request.content_length > limit:
        return error(413, f"body of {request.content_length} bytes is over the limit of {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"body is over the limit of {limit} bytes")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return error(400, f"body is not JSON: {exc}")
    try:
        envelopes = envelopes_from_webhook(payload)
    except InvalidWebhook as exc:
        return error(422, str(exc))
    if envelopes:
        try:
            await request.app[PUBLISHER].publish(envelopes)
        except Unavailable as exc:
            log.warning(
                "webhook not stored: %s",
                exc,
                extra={"event": "webhook.unavailable", "alerts": len(envelopes)},
            )
            return error(503, f"alerts not stored, retry: {exc}")
    for e in envelopes:
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


def create_app(broker: BrokerSettings, ingest: IngestSettings) -> web.Application:
    app = web.Application(client_max_size=ingest.max_body_bytes, middlewares=[json_errors])
    link = BrokerLink(broker)
    app[LINK] = link
    app[PUBLISHER] = Publisher(link, ingest.publish_timeout_s)
    app[MAX_BODY_BYTES] = ingest.max_body_bytes

    async def broker_connection(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(link.run(), name="broker-link")
        yield
        await link.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(broker_connection)
    app.router.add_post("/alerts", post_alerts)
    app.router.add_get("/alerts", get_alerts)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readiness", readiness)
    return app
