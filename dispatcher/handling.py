"""Handling one message: decode, find the definition, render, create.

``Handler.handle`` never raises for anything a message or the API can do;
it returns an Outcome, and only the consuming loop turns outcomes into
acks and rejects.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import yaml

from dispatcher.catalog import Catalog
from dispatcher.definitions import Lookup
from dispatcher.jobs import ApiFailure
from dispatcher.metrics import REFUSED
from dispatcher.naming import env_collisions
from dispatcher.rendering import JobRules, Refused, RenderError, RenderedJob, render
from dispatcher.silencing import SilenceFailure, SilenceKeeper
from shared.envelope import Alert, Envelope, InvalidEnvelope

log = logging.getLogger("openfero.dispatcher")

_RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


@dataclass(frozen=True)
class Done:
    """The Job exists: created now, or by an earlier delivery of the same occurrence."""

    job_name: str
    created: bool


@dataclass(frozen=True)
class NothingToDo:
    reason: str


@dataclass(frozen=True)
class Retry:
    """Trying again later may succeed (the API was away, overloaded, or refused us)."""

    reason: str
    error_class: str
    status: int | None = None
    needs_operator: bool = False
    retry_after_s: float | None = None


@dataclass(frozen=True)
class DeadLetter:
    """Trying again cannot succeed until someone changes something."""

    reason: str
    error_class: str
    status: int | None = None


Outcome = Done | NothingToDo | Retry | DeadLetter


class JobSink(Protocol):
    async def create(self, body: dict[str, Any]) -> bool: ...


class StatusRecorder(Protocol):
    def record(self, operarius: tuple[str, str], job_name: str, outcome: str) -> None:
        """Note an outcome on the Operarius' status; must not block or raise."""


class PrintingSink:
    """Dry run: print each Job as a YAML document instead of creating it."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out

    async def create(self, body: dict[str, Any]) -> bool:
        self.out.write("---\n" + yaml.safe_dump(body, sort_keys=False))
        self.out.flush()
        return True


class Handler:
    def __init__(self, catalog: Catalog, sink: JobSink, rules: JobRules, status: StatusRecorder | None = None, silences: SilenceKeeper | None = None):
        self.catalog = catalog
        self.sink = sink
        self.status = status
        self.rules = rules
        self.silences = silences  # Alertmanager silences for the definitions that ask (dispatcher.silencing)
        self.dry_run = isinstance(sink, PrintingSink)
        self._warned: set[tuple[str, str, int]] = set()

    async def handle(self, body: bytes, context: dict[str, Any], run_id: str = "") -> Outcome:
        """Handle one message body; ``context`` gathers fields for the log line.

        ``run_id`` comes from a forced replay and makes new Job names.
        """
        try:
            envelope = Envelope.from_json(body)
        except InvalidEnvelope as exc:
            return DeadLetter(f"undecodable message: {exc}", "InvalidEnvelope")
        alert = envelope.alert
        context.update(fingerprint=alert.fingerprint, alertname=alert.alertname, status=alert.status)
        collisions = env_collisions(alert.labels)
        if collisions:
            # Before any lookup: which definition such an alert would meet depends on which twin is read.
            name, labels = min(collisions.items())
            return self._refused(Refused(f"labels {' and '.join(map(repr, labels))} would both be {name}", "env_name_collision"), context)

        # Off the event loop, on one thread of its own: a heavy definition (its matchers or
        # its templates) slows the alerts that wait behind it, not the consumer or /healthz.
        found, rendered = await asyncio.get_running_loop().run_in_executor(_RENDERER, self._look_up_and_render, envelope, run_id)
        if found.operarius is not None:
            context["operarius"] = "/".join(found.operarius)
        outcome = await self._handle_found(found, rendered, context, alert)
        if found.operarius is not None and self.status is not None and not isinstance(outcome, Retry):
            self.status.record(found.operarius, context.get("job", ""), _status_word(outcome))
        return outcome

    def _look_up_and_render(self, envelope: Envelope, run_id: str) -> tuple[Lookup, RenderedJob | RenderError | Refused | None]:
        found = self.catalog.lookup(envelope.alert)
        if found.definition is None:
            return found, None
        try:
            return found, render(found.definition, envelope, self.rules, run_id)
        except (RenderError, Refused) as exc:
            return found, exc

    @staticmethod
    def _refused(exc: Refused, context: dict[str, Any]) -> NothingToDo:
        # The alert's own data is at fault: not a dead letter, which anyone could fill this way.
        REFUSED.labels(exc.reason).inc()
        log.warning("alert refused: %s", exc, extra={**context, "event": "alert.refused", "reason": exc.reason})
        return NothingToDo(f"alert refused: {exc}")

    async def _handle_found(self, found: Lookup, rendered: RenderedJob | RenderError | Refused | None, context: dict[str, Any], alert: Alert) -> Outcome:
        if found.definition is None:
            if found.missing_key:
                return DeadLetter(
                    f"ConfigMap {found.configmap} has no data key {context['alertname']!r}", "InvalidDefinition"
                )
            return NothingToDo(f"no definition: no Operarius matches and there is no ConfigMap {found.configmap}")
        if isinstance(rendered, RenderError):
            return DeadLetter(str(rendered), "RenderError")
        if isinstance(rendered, Refused):
            return self._refused(rendered, context)
        assert rendered is not None
        job = rendered
        context["job"] = job.name
        if self.dry_run:
            context["dry_run"] = True
        warning_key = (found.definition.source, found.definition.key, hash(found.definition.text or repr(found.definition.manifest)))
        if job.dropped_fields and warning_key not in self._warned:
            # Once per version of a definition, not once per alert.
            self._warned.add(warning_key)
            log.warning(
                "definition has fields a Job does not have; they were dropped",
                extra={**context, "event": "definition.dropped_fields", "fields": job.dropped_fields},
            )
        try:
            if self.silences is not None and not self.dry_run:
                created = await self.silences.create(found.definition, alert, job, self.sink.create, context)
            else:
                created = await self.sink.create(job.body)
        except SilenceFailure as exc:
            if exc.transient:
                return Retry(str(exc), exc.error_class, exc.status, exc.needs_operator)
            return DeadLetter(str(exc), exc.error_class, exc.status)
        except ApiFailure as exc:
            if exc.transient:
                error_class = "ApiNeedsOperator" if exc.needs_operator else "ApiUnavailable"
                return Retry(str(exc), error_class, exc.status, exc.needs_operator, exc.retry_after_s)
            return DeadLetter(str(exc), "ApiRejected", exc.status)
        return Done(job.name, created)


def _status_word(outcome: Outcome) -> str:
    if isinstance(outcome, Done):
        return "Created" if outcome.created else "Duplicate"
    return "Failed"
