"""Handling one message: decode, find the definition, render, create.

``Handler.handle`` never raises for anything a message or the API can do;
it returns one ``Result`` (dispatcher.results) that says what it came to
and what was learned on the way (the alert, the definition, the Job), and
only the consuming loop turns it into an acknowledgement, a retry or a
dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol, TextIO

import yaml

from dispatcher.catalog import Catalog
from dispatcher.definitions import Lookup
from dispatcher.jobs import ApiFailure
from dispatcher.metrics import OTHER, alertname_label
from dispatcher.naming import env_collisions
from dispatcher.rendering import JobRules, Refused, RenderError, RenderedJob, render
from dispatcher.results import INVALID_ENVELOPE, RENDER_ERROR, Failure, Hold, Kind, Result
from dispatcher.requesting import Unreachable
from dispatcher.storm import Gate, Verdict
from dispatcher.storming import StormGuard
from dispatcher.silencing import SilenceFailure, SilenceKeeper
from shared.envelope import Envelope, InvalidEnvelope

log = logging.getLogger("openfero.dispatcher")

_RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


class JobSink(Protocol):
    """Where rendered Jobs go: the API (dispatcher.jobs.JobCreator), or stdout in a dry run."""

    async def create(self, body: dict[str, Any]) -> bool:
        """Create the Job; True if created, False if one of its name exists. ApiFailure when the API fails."""


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
    def __init__(
        self,
        catalog: Catalog,
        sink: JobSink,
        rules: JobRules,
        status: StatusRecorder | None = None,
        silences: SilenceKeeper | None = None,
        storm: StormGuard | None = None,
    ):
        self.catalog = catalog
        self.sink = sink
        self.status = status
        self.rules = rules
        self.silences = silences  # Alertmanager silences for the definitions that ask (dispatcher.silencing)
        self.storm = storm  # concurrency, cool-down, breaker and the global limit (dispatcher.storming)
        self._warned: set[tuple[str, str, int]] = set()
        self._warned_keys: set[tuple[str, tuple[str, ...]]] = set()

    async def handle(self, body: bytes, message: Mapping[str, Any] | None = None, run_id: str = "", admitted: bool = False) -> Result:
        """Handle one message body. ``message`` names it in the warnings logged on the way (its id,
        the attempt); ``run_id`` comes from a forced replay and makes new Job names; ``admitted``:
        the wait leader released it (storm control)."""
        message = message or {}
        try:
            envelope = Envelope.from_json(body)
        except InvalidEnvelope as exc:
            return Result(Kind.FAILED, failure=Failure(f"undecodable message: {exc}", INVALID_ENVELOPE))
        alert = envelope.alert
        about = {**message, "fingerprint": alert.fingerprint, "alertname": alert.alertname, "status": alert.status}
        collisions = env_collisions(alert.labels)
        if collisions:
            # Before any lookup: which definition such an alert would meet depends on which twin is read.
            name, labels = min(collisions.items())
            reason = f"labels {' and '.join(map(repr, labels))} would both be {name}"
            return Result(Kind.REFUSED, f"alert refused: {reason}", refusal="env_name_collision", alert=alert, alertname_label=OTHER)

        # Off the event loop, on one thread of its own: a heavy definition (its matchers or
        # its templates) slows the alerts that wait behind it, not the consumer or /healthz.
        found, rendered = await asyncio.get_running_loop().run_in_executor(_RENDERER, self._look_up_and_render, envelope, run_id)
        known = Result(
            Kind.NO_DEFINITION,
            alert=alert,
            definition=f"{found.definition.source}/{found.definition.key}" if found.definition else "",
            operarius=found.operarius,
            alertname_label=alertname_label(alert.alertname) if self._names(found, alert.alertname) else OTHER,
        )
        result = await self._handle_found(found, rendered, known, about, admitted, envelope.received_at)
        # A storm's held and suppressed alerts write no status: thousands of them would each be a write.
        held = result.kind in (Kind.SUPPRESSED, Kind.WAITING, Kind.PARKED)
        if found.operarius is not None and self.status is not None and not held and not (result.failure and result.failure.transient):
            self.status.record(found.operarius, result.job, _status_word(result))
        return result

    def _names(self, found: Lookup, alertname: str) -> bool:
        """Whether the definition found names this alertname (a ConfigMap's key, an Operarius' selector)."""
        if found.definition is None:
            return False
        if found.operarius is None:
            return True
        operarius = self.catalog.operarius(found.operarius)
        return operarius is not None and operarius.alertname == alertname

    def _warn_key_missing(self, configmap: str, alertname: str, about: Mapping[str, Any]) -> None:
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
            extra={**about, "event": "definition.key_missing", "configmap": configmap, "key": alertname, "differs_in_case_from": variant},
        )

    def _look_up_and_render(self, envelope: Envelope, run_id: str) -> tuple[Lookup, RenderedJob | RenderError | Refused | None]:
        found = self.catalog.lookup(envelope.alert)
        if found.definition is None:
            return found, None
        try:
            return found, render(found.definition, envelope, self.rules, run_id)
        except (RenderError, Refused) as exc:
            return found, exc

    async def _handle_found(
        self, found: Lookup, rendered: RenderedJob | RenderError | Refused | None, known: Result, about: Mapping[str, Any], admitted: bool = False, received: str = ""
    ) -> Result:
        alertname = known.alert.alertname if known.alert else ""
        if found.definition is None:
            if found.missing_key:
                self._warn_key_missing(found.configmap, alertname, about)
                return replace(known, reason=f"no definition: ConfigMap {found.configmap} has no data key {alertname!r}")
            return replace(known, reason=f"no definition: no Operarius matches and there is no ConfigMap {found.configmap}")
        if isinstance(rendered, RenderError):
            return replace(known, kind=Kind.FAILED, failure=Failure(str(rendered), RENDER_ERROR))
        if isinstance(rendered, Refused):
            return replace(known, kind=Kind.REFUSED, reason=f"alert refused: {rendered}", refusal=rendered.reason)
        assert rendered is not None
        job = rendered
        known = replace(known, job=job.name)
        warning_key = (found.definition.source, found.definition.key, hash(found.definition.text or repr(found.definition.manifest)))
        if job.dropped_fields and warning_key not in self._warned:
            # Once per version of a definition, not once per alert.
            self._warned.add(warning_key)
            log.warning(
                "definition has fields a Job does not have; they were dropped",
                extra={**about, "job": job.name, "event": "definition.dropped_fields", "fields": job.dropped_fields},
            )
        if self.storm is not None:
            held = await self._storm_gate(job, known, admitted, received)
            if held is not None:
                return held
        silence = ""
        try:
            if self.silences is not None:
                assert known.alert is not None
                created, silence = await self.silences.create(found.definition, known.alert, job, self.sink.create, {**about, "job": job.name})
            else:
                created = await self.sink.create(job.body)
        except (SilenceFailure, ApiFailure) as exc:
            if self.storm is not None:
                self.storm.book.unclaim(job.name)
            return replace(known, kind=Kind.FAILED, failure=exc.failure)
        return replace(known, kind=Kind.CREATED if created else Kind.DUPLICATE, silence=silence)


    async def _storm_gate(self, job: RenderedJob, known: Result, admitted: bool, received: str) -> Result | None:
        """None to create the Job now; else what storm control made of the alert (dispatcher.storm)."""
        storm = self.storm
        assert storm is not None
        verdict = storm.verdict(known.definition, job, admitted)
        if verdict.gate is Gate.GO and verdict.trial:
            try:
                claimed = await storm.claim_trial(known.definition, job.name)
            except Unreachable as exc:
                storm.book.unclaim(job.name)
                return replace(known, kind=Kind.FAILED, failure=Failure.from_api(None, f"claiming the breaker's trial: {exc}"))
            if not claimed:  # another dispatcher's alert is the trial
                storm.book.unclaim(job.name)
                verdict = Verdict(Gate.PARK)
        if verdict.gate is Gate.GO:
            return None
        if verdict.gate is Gate.SUPPRESS:
            reason = f"alert suppressed: Job {verdict.covering_job} ran for its target within the cool-down"
            return replace(known, kind=Kind.SUPPRESSED, reason=reason, covering_job=verdict.covering_job)
        limit = job.storm.concurrency if verdict.why == "concurrency" else None
        hold = Hold(known.definition, job.concurrency_target, limit, job.name, verdict.why or "breaker", received, job.cooldown_target, job.storm.cooldown_s)
        return replace(known, kind=Kind.WAITING if verdict.gate is Gate.WAIT else Kind.PARKED, hold=hold)


def _case_variant(keys: list[str], alertname: str) -> str | None:
    return next((key for key in keys if key.lower() == alertname.lower()), None)


def _status_word(result: Result) -> str:
    if result.done:
        return "Created" if result.kind is Kind.CREATED else "Duplicate"
    return "Failed"
