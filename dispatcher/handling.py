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
from dispatcher.metrics import REFUSED, alertname_label
from dispatcher.naming import env_collisions
from dispatcher.rendering import JobRules, Refused, RenderError, RenderedJob, render
from shared.envelope import Envelope, InvalidEnvelope

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
    """Dry run: print each Job as a YAML document instead of creating it.

    A Job name printed before in this process is a duplicate, as the API's
    409 would make it: printed once, counted as a duplicate after.
    """

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out
        self.printed: set[str] = set()

    async def create(self, body: dict[str, Any]) -> bool:
        name = str((body.get("metadata") or {}).get("name", ""))
        if name in self.printed:
            return False
        self.printed.add(name)
        self.out.write("---\n" + yaml.safe_dump(body, sort_keys=False))
        self.out.flush()
        return True


class Handler:
    def __init__(self, catalog: Catalog, sink: JobSink, rules: JobRules, status: StatusRecorder | None = None):
        self.catalog = catalog
        self.sink = sink
        self.status = status
        self.rules = rules
        self.dry_run = isinstance(sink, PrintingSink)
        self._warned: set[tuple[str, str, int]] = set()
        self._warned_keys: set[tuple[str, tuple[str, ...]]] = set()

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
        if self._names(found, alert.alertname):
            context["metric_alertname"] = alertname_label(alert.alertname)
        outcome = await self._handle_found(found, rendered, context)
        if found.operarius is not None and self.status is not None and not isinstance(outcome, Retry):
            self.status.record(found.operarius, context.get("job", ""), _status_word(outcome))
        return outcome

    def _names(self, found: Lookup, alertname: str) -> bool:
        """Whether the definition found names this alertname (a ConfigMap's key, an Operarius' selector)."""
        if found.definition is None:
            return False
        if found.operarius is None:
            return True
        operarius = self.catalog.operarius(found.operarius)
        return operarius is not None and operarius.alertname == alertname

    def _warn_key_missing(self, configmap: str, alertname: str, context: dict[str, Any]) -> None:
        """Once per version of a ConfigMap: the alerts that look it up can make any number of case variants."""
        keys = self.catalog.data_keys(configmap)
        if (configmap, tuple(keys)) in self._warned_keys:
            return
        self._warned_keys.add((configmap, tuple(keys)))
        variant = _case_variant(keys, alertname)
        differs = f"; its key {variant!r} differs only in case (keys are exact, as in the Go original)" if variant else ""
        log.warning(
            "ConfigMap %s has no data key %r%s: nothing to do",
            configmap,
            alertname,
            differs,
            extra={**context, "event": "definition.key_missing", "configmap": configmap, "key": alertname, "differs_in_case_from": variant},
        )

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

    async def _handle_found(self, found: Lookup, rendered: RenderedJob | RenderError | Refused | None, context: dict[str, Any]) -> Outcome:
        if found.definition is None:
            if found.missing_key:
                self._warn_key_missing(found.configmap, context["alertname"], context)
                return NothingToDo(f"no definition: ConfigMap {found.configmap} has no data key {context['alertname']!r}")
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
            created = await self.sink.create(job.body)
        except ApiFailure as exc:
            if exc.transient:
                error_class = "ApiNeedsOperator" if exc.needs_operator else "ApiUnavailable"
                return Retry(str(exc), error_class, exc.status, exc.needs_operator, exc.retry_after_s)
            return DeadLetter(str(exc), "ApiRejected", exc.status)
        return Done(job.name, created)


def _case_variant(keys: list[str], alertname: str) -> str | None:
    return next((key for key in keys if key.lower() == alertname.lower()), None)


def _status_word(outcome: Outcome) -> str:
    if isinstance(outcome, Done):
        return "Created" if outcome.created else "Duplicate"
    return "Failed"
