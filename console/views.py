"""The console's pages and endpoints.

GET  /timeline                alerts, their Jobs and outcomes; filters; charts
GET  /timeline/events         the same, live (server-sent events)
GET  /definitions             every definition with its state; the preview form
GET  /definitions/preview     ?id=<message id>: the Job that alert would make
POST /definitions/preview     a pasted alert: the Job it would make (changes nothing)
GET  /dead-letters            the dead letters, as `openfero dlq list` reads them
POST /dead-letters/confirm    what a replay or purge would touch, to confirm
POST /dead-letters/replay     replay the confirmed ids; /dead-letters/purge: purge them
GET  /operations/<id>         an action's progress (.json for the page's script)
GET  /health                  broker, queues, dispatchers seen, Kubernetes API, recent errors
GET  /healthz, /readiness     probes (no authentication)

Every value that came from an alert is rendered by Jinja with autoescaping
and inside <bdi> (its direction marks stay inside it); nothing is
interpolated into script.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import orjson
from aiohttp import web

from console import charts, csrf
from console.app import CONSOLE, Console
from console.security import USER
from console.timeline import OUTCOMES, Row, TimelineFilter, definition_stats
from openfero.authoring import Preview, alerts_from_payload, preview
from openfero.records import Record
from shared.envelope import Envelope, InvalidEnvelope

log = logging.getLogger("openfero.console")

HERE = Path(__file__).parent
DEFAULT_ROWS, MAX_ROWS = 500, 5000
WINDOWS = (("15m", 15 * 60), ("1h", 3600), ("6h", 6 * 3600), ("24h", 86400), ("7d", 7 * 86400))
_CHARTS_EVERY_S = 5.0
_HEARTBEAT_S = 15.0
MAX_PREVIEW_ALERTS = 20
MAX_ACTION_IDS = 10000
ALERT_SERIES = (("firing", "firing"), ("resolved", "resolved"))
JOB_SERIES = (("succeeded", "succeeded"), ("failed", "failed"), ("running", "running"), ("pending", "pending"), ("deleted", "deleted"))


def _clip(value: Any, length: int = 200) -> str:
    text = str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


def _slug(value: Any) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")
    return slug if slug in _KNOWN_SLUGS else "other"


_KNOWN_SLUGS = {re.sub(r"[^a-z0-9]+", "-", o) for o in (*OUTCOMES, "firing", "resolved", "suppressed", "waiting", "parked")}


def _clock(when: datetime | None) -> str:
    return when.astimezone(timezone.utc).strftime("%H:%M:%S") if when else ""


def _stamp(when: datetime | None) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "—"


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = max(0, int((datetime.now(timezone.utc) - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template is HTML: alert data is escaped everywhere, attributes included
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(clip=_clip, slug=_slug, clock=_clock, stamp=_stamp, ago=_ago)


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    user = request.get(USER, "")
    html = ENV.get_template(template).render(
        user=user,
        csrf=csrf.issue(console.csrf_key, user),
        read_only=console.settings.read_only,
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def fragment(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


# -- timeline -----------------------------------------------------------------------------------


def timeline_filter(console: Console, query: Any) -> tuple[TimelineFilter, str, int]:
    window = str(query.get("window", ""))
    seconds: float | None = dict(WINDOWS).get(window)
    if seconds is None or seconds > console.window.total_seconds():
        seconds, window = console.window.total_seconds(), ""
    try:
        limit = min(MAX_ROWS, max(1, int(query.get("limit", DEFAULT_ROWS))))
    except ValueError:
        limit = DEFAULT_ROWS
    selector = TimelineFilter(
        alertname=str(query.get("alertname", ""))[:1000],
        status=str(query.get("status", ""))[:100],
        outcome=str(query.get("outcome", "")) if query.get("outcome") in OUTCOMES else "",
        since=datetime.now(timezone.utc) - timedelta(seconds=seconds),
        search=str(query.get("q", ""))[:2000],
    )
    return selector, window, limit


def timeline_charts(console: Console, rows: list[Row], since: datetime) -> list[charts.Chart]:
    now = datetime.now(timezone.utc)
    alerts = charts.over_time(
        "Alerts received", ALERT_SERIES, ((r.alert.received, _slug(r.alert.status)) for r in rows), since, now
    )
    jobs = [r.job for r in rows if r.job is not None and r.job.created is not None]
    created = charts.over_time(
        "Jobs created, by how they ended", JOB_SERIES, ((j.created, j.state) for j in jobs if j.created), since, now
    )
    durations = charts.durations(
        "Remediation time (Job start to end)", ((d, j.state) for j in jobs if (d := j.duration_s) is not None), JOB_SERIES[:2]
    )
    return [alerts, created, durations]


async def timeline(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    console.refresh_dead_letters_soon()
    selector, window, limit = timeline_filter(console, request.query)
    rows = list(console.timeline.rows(selector))
    assert selector.since is not None
    return page(
        request,
        "timeline.html",
        page="timeline",
        title="Timeline",
        rows=rows[:limit],
        matched=len(rows),
        limit=limit,
        total=len(console.timeline.alerts),
        dropped=console.timeline.dropped,
        charts=timeline_charts(console, rows, selector.since),
        selector=selector,
        window=window,
        windows=[w for w, s in WINDOWS if s <= console.window.total_seconds()],
        console_window=console.settings.window_s,
        alertnames=console.timeline.alertnames(),
        outcomes=OUTCOMES,
        query=request.query_string,
        caught_up=console.streams.archive.caught_up.is_set(),
        outcome_stream=console.streams.outcomes_found,
    )


async def timeline_events(request: web.Request) -> web.StreamResponse:
    """Changed rows that match the page's filters, as server-sent events; charts every few seconds."""
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    if console.streams_open >= console.settings.max_streams or console.hub.closed:
        return web.Response(status=503, text="503: too many live pages open; reload later\n")
    selector, _, _ = timeline_filter(console, request.query)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    sub = console.hub.subscribe()
    console.streams_open += 1
    loop = asyncio.get_running_loop()
    charts_sent = loop.time()
    changed_since_charts = False
    try:
        await response.write(b"retry: 3000\n\n")
        while True:
            try:
                # A queue's get may be cancelled by the timeout without harm (an async generator's may not).
                batch = await asyncio.wait_for(sub.queue.get(), _HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": still here\n\n")
                continue
            if batch is None:
                if sub.overflowed:
                    await _event(response, "reload", {"reason": "the timeline changed faster than this page could follow"})
                break
            rows = []
            for message_id in batch:
                entry = console.timeline.alerts.get(message_id)
                if entry is None:
                    continue
                row = console.timeline.row(entry)
                if selector.matches(row):
                    rows.append({"id": entry.id, "received": entry.received.isoformat(), "html": fragment("row.html", r=row)})
            if rows or "*" in batch:
                await _event(response, "rows", {"rows": rows, "more": "*" in batch})
                changed_since_charts = True
            if changed_since_charts and loop.time() - charts_sent >= _CHARTS_EVERY_S:
                all_rows = list(console.timeline.rows(selector))
                assert selector.since is not None
                html = fragment("charts.html", charts=timeline_charts(console, all_rows, selector.since))
                await _event(response, "charts", {"html": html, "matched": len(all_rows)})
                charts_sent, changed_since_charts = loop.time(), False
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away, or the console stops
    finally:
        console.hub.unsubscribe(sub)
        console.streams_open -= 1
    return response


async def _event(response: web.StreamResponse, name: str, data: Any) -> None:
    await response.write(f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")


# -- definitions --------------------------------------------------------------------------------


async def definitions(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    assert console.cluster is not None
    day_ago = datetime.now(timezone.utc) - timedelta(days=1)
    stats = definition_stats(console.timeline.jobs.values(), day_ago)
    return page(
        request,
        "definitions.html",
        page="definitions",
        title="Definitions",
        definitions=console.cluster.definitions(),
        stats=stats,
        storm=console.storm,
        recent=_recent_alerts(console),
        picked="",
        alert_text="",
        previews=[],
        problem="",
        cluster=console.api_client is not None,
        definitions_path=console.kube.definitions_path,
    )


def _recent_alerts(console: Console, count: int = 50) -> list[Any]:
    return list(console.timeline.alerts.values())[-count:][::-1]


def _webhook_of(envelope: Envelope) -> str:
    """The alert as Alertmanager would send it alone, to edit and try again."""
    group = envelope.group
    payload = {
        "version": group.version or "4",
        "status": envelope.alert.status,
        "receiver": group.receiver,
        "groupKey": group.group_key,
        "groupLabels": group.group_labels,
        "commonLabels": group.common_labels,
        "commonAnnotations": group.common_annotations,
        "externalURL": group.external_url,
        "alerts": [envelope.alert.__dict__],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False)


async def _previews(console: Console, envelopes: list[Envelope]) -> list[Preview]:
    # Rendering runs the dispatcher's code and bounds: off the event loop.
    return await asyncio.to_thread(lambda: [preview(console.catalog, e, console.rules) for e in envelopes[:MAX_PREVIEW_ALERTS]])


async def preview_page(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    previews: list[Preview] = []
    problem, text, picked = "", "", ""
    if request.method == "POST":
        form = await request.post()
        text = str(form.get("alert", ""))
        try:
            envelopes = alerts_from_payload(json.loads(text))
            previews = await _previews(console, envelopes)
            if not envelopes:
                problem = "the webhook holds no alert"
        except ValueError as exc:  # not JSON, or not a webhook (InvalidWebhook is one)
            problem = f"not an alert or a webhook: {exc}"
    elif request.query.get("id"):
        picked = request.query["id"]
        entry = console.timeline.alerts.get(picked)
        if entry is None:
            problem = "that alert is no longer on the timeline"
        else:
            try:
                envelope = Envelope.from_json(entry.body)
                text = _webhook_of(envelope)
                previews = await _previews(console, [envelope])
            except InvalidEnvelope as exc:
                problem = str(exc)
    assert console.cluster is not None
    return page(
        request,
        "definitions.html",
        page="definitions",
        title="Preview",
        definitions=console.cluster.definitions(),
        stats=definition_stats(console.timeline.jobs.values(), datetime.now(timezone.utc) - timedelta(days=1)),
        storm=console.storm,
        recent=_recent_alerts(console),
        picked=picked,
        alert_text=text,
        previews=previews,
        problem=problem,
        cluster=console.api_client is not None,
        definitions_path=console.kube.definitions_path,
    )


# -- dead letters -------------------------------------------------------------------------------


def _dead_filter(query: Any) -> tuple[str, str]:
    return str(query.get("alertname", ""))[:1000], str(query.get("reason", ""))[:1000]


def _dead_matches(record: Record, alertname: str, reason: str) -> bool:
    return (not alertname or record.alertname == alertname) and (not reason or reason.lower() in record.reason.lower())


async def dead_letters(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    reading = await console.desk.reading(fresh=request.query.get("fresh") == "1")
    alertname, reason = _dead_filter(request.query)
    records = [r for r in reading.records if _dead_matches(r, alertname, reason)]
    broker = await console.prober.state(console.link.connection)
    dead = broker.queue("dead")
    running = [o for o in console.desk.operations.values() if o.state in ("waiting", "running")]
    return page(
        request,
        "dead_letters.html",
        page="dead-letters",
        title="Dead letters",
        reading=reading,
        records=records,
        alertname=alertname,
        reason=reason,
        held=(dead.unacknowledged or 0) if dead else 0,
        running=running,
        operations=list(console.desk.operations.values())[::-1][:10],
        storm=console.storm,
        parked=await console.storm.parked() if console.storm.available else [],
    )


async def _action_ids(request: web.Request) -> tuple[str, frozenset[str], Any]:
    form = await request.post()
    action = str(form.get("action", ""))
    if action not in ("replay", "purge"):
        raise web.HTTPBadRequest(text="400: action must be replay or purge\n")
    ids = frozenset(str(v) for v in form.getall("id", []) if str(v))
    return action, ids, form


def _refuse_read_only(console: Console) -> None:
    if console.settings.read_only:
        raise web.HTTPForbidden(text="403: this console is read-only (OPENFERO_CONSOLE_READ_ONLY)\n")


async def confirm(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    _refuse_read_only(console)
    action, ids, form = await _action_ids(request)
    reading = await console.desk.reading()
    if request.query.get("scope") == "matching":
        alertname, reason = str(form.get("alertname", "")), str(form.get("reason", ""))
        chosen = [r for r in reading.records if _dead_matches(r, alertname, reason)]
    else:
        by_id = reading.by_id
        chosen = [by_id[i] for i in sorted(ids) if i in by_id]
    if not chosen:
        return page(request, "confirm.html", page="dead-letters", title="Nothing to confirm", action=action, chosen=[], gone=len(ids))
    if len(chosen) > MAX_ACTION_IDS:
        chosen = chosen[:MAX_ACTION_IDS]
    return page(request, "confirm.html", page="dead-letters", title=f"Confirm {action}", action=action, chosen=chosen, gone=max(0, len(ids) - len(chosen)))


async def act(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    _refuse_read_only(console)
    action, ids, _ = await _action_ids(request)
    if request.match_info["action"] != action or not ids or len(ids) > MAX_ACTION_IDS:
        raise web.HTTPBadRequest(text=f"400: name between 1 and {MAX_ACTION_IDS} dead letters, and the action in the path\n")
    operation = console.desk.start(action, ids, request[USER])
    raise web.HTTPSeeOther(f"/operations/{operation.id}")


async def operation_page(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    name = request.match_info["id"]
    as_json = name.endswith(".json")
    operation = console.desk.operations.get(name.removesuffix(".json"))
    if operation is None:
        raise web.HTTPNotFound(text="404: no such operation on this console (it keeps the latest 50)\n")
    if as_json:
        return web.json_response(operation.summary())
    return page(request, "operation.html", page="dead-letters", title=f"{operation.kind.title()} {operation.id}", op=operation)


# -- health -------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    broker = await console.prober.state(console.link.connection)
    assert console.cluster is not None
    return page(
        request,
        "health.html",
        page="health",
        title="Health",
        broker=broker,
        link_ready=console.link.ready.is_set(),
        api=console.cluster.health,
        events=console.cluster.events,
        events_error=console.cluster.events_error,
        errors=list(console.errors.records),
        dead_reasons=_top_reasons(console),
        archive_read=console.streams.archive.read,
        outcomes_found=console.streams.outcomes_found,
        started=console.started,
        job_namespace=console.kube.job_namespace,
    )


def _top_reasons(console: Console) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for reason in console.timeline.dead.values():
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:10]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    console: Console = request.app[CONSOLE]  # type: ignore[assignment]
    if console.link.ready.is_set():
        return web.json_response({"status": "ready"})
    return web.json_response({"error": "not connected to the broker", "status": 503}, status=503)


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/timeline")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/timeline", timeline)
    app.router.add_get("/timeline/events", timeline_events)
    app.router.add_get("/definitions", definitions)
    app.router.add_get("/definitions/preview", preview_page)
    app.router.add_post("/definitions/preview", preview_page)
    app.router.add_get("/dead-letters", dead_letters)
    app.router.add_post("/dead-letters/confirm", confirm)
    app.router.add_post("/dead-letters/{action:replay|purge}", act)
    app.router.add_get("/operations/{id}", operation_page)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readiness", readiness)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_static("/static", HERE / "static", append_version=False)
