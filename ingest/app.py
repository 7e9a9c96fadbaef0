"""The webhook's HTTP surface.

POST /alerts       an Alertmanager webhook (application/json) -> 200 once stored, 4xx bad input, 503 retry
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
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from ingest import metrics
from ingest.auth import Authenticator
from ingest.connections import ConnectionGuard
from ingest.limits import LimitExceeded, Limits
from ingest.openapi import OPENAPI
from ingest.publishing import Publisher, Unavailable
from ingest.queues import watch_queues
from ingest.reading import Refused
from ingest.worker import BodyReader, Busy, WorkerLost
from shared.broker import BrokerLink
from shared.envelope import Envelope
from shared.loop import running_loop_name
from shared.metrics import metrics_handler
from shared.settings import BrokerSettings, IngestSettings

log = logging.getLogger("openfero.ingest")

LINK = web.AppKey("link", BrokerLink)
PUBLISHER = web.AppKey("publisher", Publisher)
SETTINGS = web.AppKey("settings", IngestSettings)
LIMITS = web.AppKey("limits", Limits)
AUTH = web.AppKey("auth", Authenticator)
READER = web.AppKey("reader", BodyReader)
GUARD = web.AppKey("guard", ConnectionGuard)


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


JSON_CHARSETS = ("", "utf-8", "utf8")
# Alerts published, or logged, per turn of the event loop, and chunks in
# flight at once: a webhook of thousands of alerts never holds the loop long.
CHUNK = 50
WINDOW = 10
LOG_CHUNK = 200


async def post_alerts(request: web.Request) -> web.Response:
    app = request.app
    challenge = app[AUTH].check(request.headers.get("Authorization"))
    if challenge is not None:
        metrics.WEBHOOKS.labels("unauthorized").inc()
        metrics.AUTH_FAILURES.inc()
        return error(401, "missing or wrong credentials", {"WWW-Authenticate": challenge})
    if request.content_type != "application/json" or (request.charset or "").lower() not in JSON_CHARSETS:
        # Alertmanager always sends application/json; a browser cannot send
        # it cross-site without asking first (CORS preflight).
        return reject(415, "media_type", f"Content-Type must be application/json, got {request.headers.get('Content-Type', 'none')[:100]!r}")
    settings = app[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return reject(413, "too_large", f"body of {request.content_length} bytes is over the limit of {limit} bytes")
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return reject(413, "too_large", f"body is over the limit of {limit} bytes")
    except TimeoutError:
        metrics.CONNECTIONS_CLOSED.labels("body_timeout").inc()
        response = reject(408, "body_timeout", f"body not received within {settings.body_timeout_s:g} s")
        response.force_close()
        return response
    try:
        read = await app[READER].read(body)
    except (Busy, WorkerLost) as exc:
        metrics.WEBHOOKS.labels("busy").inc()
        log.warning("webhook refused: %s", exc, extra={"event": "webhook.busy", "bytes": len(body)})
        return error(503, f"busy, retry: {exc}")
    if isinstance(read, Refused):
        return reject(read.status, read.reason, read.message)
    envelopes = read
    if envelopes:
        started = time.perf_counter()
        try:
            with app[LIMITS].in_flight(len(envelopes)), _out_of_gc_scans(len(envelopes) > WINDOW * CHUNK):
                await _publish(app[PUBLISHER], envelopes)
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
    if log.isEnabledFor(logging.INFO):
        await _log_accepted(envelopes)
    return web.json_response({"accepted": len(envelopes)})


_frozen_by = 0


@contextlib.contextmanager
def _out_of_gc_scans(large: bool) -> Iterator[None]:
    """While a large webhook is published, leave the objects alive now out of the cyclic GC's scans.

    Its full collections scan every object alive; with the envelopes of
    thousands of alerts alive they stopped the event loop for 50-70 ms,
    several times per webhook of 10,000 alerts (measured). gc.freeze() keeps
    them out of those scans; envelopes hold no cycles, so reference counting
    still frees them. Nested webhooks: the last one out unfreezes.
    """
    global _frozen_by
    if not large:
        yield
        return
    _frozen_by += 1
    gc.freeze()
    try:
        yield
    finally:
        _frozen_by -= 1
        if not _frozen_by:
            gc.unfreeze()


async def _publish(publisher: Publisher, envelopes: list[Envelope]) -> None:
    """Publish in chunks, at most ``WINDOW`` in flight, one started per turn of the event loop.

    One publish of thousands of messages would hold the event loop for
    hundreds of milliseconds, building the messages and then taking their
    confirms. Chunks started one per turn keep each turn short, so /healthz
    is answered meanwhile, and ``WINDOW`` x ``CHUNK`` publishes in flight is
    where the publisher is fastest (README, Performance). The first failure
    stops the rest and is raised.
    """
    if len(envelopes) <= CHUNK:
        await publisher.publish(envelopes)
        return
    window = asyncio.Semaphore(WINDOW)
    tasks: list[asyncio.Task[None]] = []
    try:
        for start in range(0, len(envelopes), CHUNK):
            await window.acquire()
            failed = next((t for t in tasks if t.done() and t.exception() is not None), None)
            if failed is not None:
                await failed
            task = asyncio.create_task(publisher.publish(envelopes[start : start + CHUNK]))
            task.add_done_callback(lambda _: window.release())
            tasks.append(task)
            await asyncio.sleep(0)
        for finished in asyncio.as_completed(tasks):
            await finished
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _log_accepted(envelopes: list[Envelope]) -> None:
    """One line per alert, a chunk per turn of the event loop: this is the hot path."""
    for start in range(0, len(envelopes), LOG_CHUNK):
        if start:
            await asyncio.sleep(0)
        for e in envelopes[start : start + LOG_CHUNK]:
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
    guard = ConnectionGuard(ingest.max_connections, ingest.header_timeout_s)
    app = web.Application(client_max_size=ingest.max_body_bytes, middlewares=[guard.middleware, json_errors])
    app[GUARD] = guard
    app[READER] = BodyReader(ingest)
    link = BrokerLink(broker)
    app[LINK] = link
    app[PUBLISHER] = Publisher(link, ingest.publish_timeout_s)
    app[SETTINGS] = ingest
    app[LIMITS] = Limits(ingest)
    app[AUTH] = Authenticator.from_settings(ingest)

    async def broker_connection(app: web.Application) -> AsyncIterator[None]:
        log.info(
            "ingest starting",
            extra={"event": "ingest.starting", "addr": str(ingest.addr), "event_loop": running_loop_name(), "prefix": broker.queue_prefix},
        )
        tasks = [
            asyncio.create_task(link.run(), name="broker-link"),
            asyncio.create_task(watch_queues(link), name="queue-counts"),
        ]
        app[READER].start()
        yield
        app[READER].close()
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
