"""Holding an alert's silence while its remediation runs, and ending it when the remediation did not work.

dispatcher.silences states the rules; this module talks to Alertmanager
(dispatcher.alertmanager) and the Kubernetes API.

**Before the Job** (``SilenceKeeper.create``, called by the handler in
place of a plain create), for a definition that asks for a silence:
1. If the Job exists already, an earlier delivery made it (and its
   silence): no silence now, the create finds the Job (a duplicate).
   Without this, a repeat notification of an alert whose remediation
   failed would silence it again.
2. Find a silence of this Job that still holds (``createdBy: openfero``
   and the Job's marker): an earlier attempt of this message, or a copy of
   it, made it before it could create the Job. Else create one, on the
   first Alertmanager that answers.
3. Write the silence on the Job (annotations) and create the Job.
No Alertmanager answering is a transient failure (the message is retried
on the broker): a Job is never created without the silence its
definition asked for. A Job the API refuses for good gets its silence
expired at once (nothing will fix the alert, so it may page); so does a
silence made while another delivery created the Job with its own. A
transient failure to create the Job keeps the silence for the retry,
which finds it again; its end bounds a retry that never succeeds.

**After the Job** (``SilenceEnder.on_outcome``, in the outcome leader's
step): a success whose definition says keep leaves the silence to end by
itself; any other end (failed, deadline exceeded, deleted, success with
expire) expires it at once, on the Alertmanager that made it or, when
that one does not answer, on any other (HA peers gossip silences). When
none answers, the step fails and the leader tries again later, for that
Job only, until the silence has reached its own end: that end bounds
what an unreachable Alertmanager can cost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from dispatcher import silences as rules
from dispatcher.alertmanager import Alertmanagers, Rejected, Unavailable
from dispatcher.definitions import Definition
from dispatcher.jobs import ApiFailure
from dispatcher.metrics import SILENCE_CREATE_FAILURES, SILENCES_CREATED, SILENCES_EXPIRED_EARLY
from dispatcher.outcomes import Ending, JobView
from dispatcher.rendering import RenderedJob
from dispatcher.results import Failure
from shared.envelope import Alert

log = logging.getLogger("openfero.dispatcher")

EXPIRED_NOW = "expired-now"  # expire(): this call expired it


class SilenceFailure(Exception):
    """The silence a definition asks for could not be had; ``transient`` says whether a retry may help."""

    def __init__(self, message: str, error_class: str, transient: bool, needs_operator: bool = False, status: int | None = None):
        super().__init__(message)
        self.failure = Failure(message, error_class, status, transient, needs_operator)

    @property
    def transient(self) -> bool:
        return self.failure.transient


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SilenceKeeper:
    """The handler's side: a silence before the Job, for the definitions that ask for one."""

    def __init__(
        self,
        alertmanagers: Alertmanagers,
        read_job: Callable[[str], Awaitable[dict[str, Any] | None]],
        namespace: str,
        duration_s: float,
        margin_s: float,
    ):
        self.alertmanagers = alertmanagers
        self.read_job = read_job  # the Job's annotations, or None when there is no such Job
        self.namespace = namespace
        self.duration_s = duration_s
        self.margin_s = margin_s

    async def create(
        self,
        definition: Definition,
        alert: Alert,
        job: RenderedJob,
        create: Callable[[dict[str, Any]], Awaitable[bool]],
        about: Mapping[str, Any],
    ) -> tuple[bool, str]:
        """Create the Job (True) or find it there (False), with its silence first if the definition asks;
        and the silence's id ("" for none). ``about`` names the message in the log.

        Raises SilenceFailure, or the ``create``'s own errors (after the silence was expired).
        """
        try:
            want = rules.wanted(definition.manifest, definition.annotations)
        except rules.InvalidSilenceRequest as exc:
            raise SilenceFailure(f"definition {definition.source} key {definition.key!r}: {exc}", "InvalidDefinition", transient=False) from None
        if want is None or alert.status != "firing":
            # A resolved alert has nothing to page; a silence over it would hide it firing again.
            return await create(job.body), ""
        if await self.read_job(job.name) is not None:
            return await create(job.body), ""  # made by an earlier delivery, with its silence: a duplicate
        held, made = await self._find_or_make(definition, alert, job, want)
        log.info(
            "silence created" if made else "silence found: an earlier attempt made it",
            extra={**about, "event": "silence.created" if made else "silence.found", "silence": held.id, "alertmanager": held.alertmanager, "ends_at": held.ends_at.isoformat()},
        )
        job.body["metadata"].setdefault("annotations", {}).update(held.annotations())
        try:
            created = await create(job.body)
        except ApiFailure as exc:
            if not exc.transient:
                # No Job will ever fix the alert under this silence. (A transient failure keeps it:
                # the retry finds it again, and its end bounds a retry that never succeeds.)
                await self.release(held, "not_created", job.name)
            raise
        if not created:
            theirs = await self.read_job(job.name)
            if theirs is None or theirs.get(rules.JOB_SILENCE_ID) != held.id:
                await self.release(held, "duplicate", job.name)
        return created, held.id

    async def _find_or_make(self, definition: Definition, alert: Alert, job: RenderedJob, want: rules.Wanted) -> tuple[rules.Held, bool]:
        if not self.alertmanagers.urls:
            SILENCE_CREATE_FAILURES.labels("not_configured").inc()
            raise SilenceFailure("the definition asks for a silence and OPENFERO_ALERTMANAGER_URLS is empty", "AlertmanagerNotConfigured", transient=True, needs_operator=True)
        problems = []
        for url in self.alertmanagers.urls:
            try:
                for silence in await self.alertmanagers.silences(url):
                    if rules.is_ours(silence, self.namespace, job.name) and rules.holding(silence):
                        return rules.Held.found(silence, url, want.after_success), False
                now = _now()
                lifetime = rules.lifetime_s(job.body, self.duration_s, self.margin_s)
                body = rules.body(alert.labels, self.namespace, job.name, f"{definition.source}/{definition.key}", now, lifetime)
                silence_id = await self.alertmanagers.create(url, body)
            except Unavailable as exc:
                problems.append(str(exc))
                continue
            except Rejected as exc:
                SILENCE_CREATE_FAILURES.labels("rejected").inc()
                error_class = "AlertmanagerNeedsOperator" if exc.needs_operator else "AlertmanagerRejected"
                raise SilenceFailure(str(exc), error_class, transient=exc.needs_operator, needs_operator=exc.needs_operator, status=exc.status) from None
            SILENCES_CREATED.inc()
            return rules.Held(silence_id, url, now + timedelta(seconds=lifetime), want.after_success), True
        SILENCE_CREATE_FAILURES.labels("unavailable").inc()
        raise SilenceFailure("no Alertmanager answered: " + "; ".join(problems), "AlertmanagerUnavailable", transient=True)

    async def release(self, held: rules.Held, why: str, job_name: str) -> None:
        """Expire a silence no Job of ours holds; best effort (its own end bounds a failure)."""
        try:
            action, where = await expire(self.alertmanagers, held)
        except SilenceFailure as exc:
            log.warning("could not expire a silence no Job holds; it ends at its end: %s", exc, extra={"event": "silence.release_failed", "silence": held.id, "job": job_name})
            return
        if action == EXPIRED_NOW:
            SILENCES_EXPIRED_EARLY.labels(why).inc()
        log.info("silence expired: no Job of this delivery holds it", extra={"event": "silence.released", "silence": held.id, "job": job_name, "why": why, "alertmanager": where, "action": action})


async def expire(alertmanagers: Alertmanagers, held: rules.Held) -> tuple[str, str]:
    """End ``held`` now: (action, Alertmanager) with action EXPIRED_NOW, EXPIRED (before), ENDED or MISSING.

    The Alertmanager that made it is asked first, then the others. Raises a
    transient SilenceFailure when it may still hold and nobody who might
    know it answered.
    """
    urls = [held.alertmanager] if held.alertmanager in alertmanagers.urls else []
    urls += [u for u in alertmanagers.urls if u not in urls]
    problems = []
    for url in urls:
        try:
            silence = await alertmanagers.silence(url, held.id)
            if silence is None:
                continue  # not known here (not gossiped, or another cluster): ask the next one
            if not rules.holding(silence):
                return rules.already_over(silence, held), url
            await alertmanagers.expire(url, held.id)
            return EXPIRED_NOW, url
        except (Unavailable, Rejected) as exc:
            problems.append(str(exc))
    if problems and not held.ended(_now()):
        raise SilenceFailure(f"could not expire silence {held.id}: {'; '.join(problems)}", "AlertmanagerUnavailable", transient=True)
    return (rules.ENDED if held.ended(_now()) else rules.MISSING), ""


class SilenceEnder:
    """The outcome leader's side: what a Job's end does to the silence it holds."""

    def __init__(self, alertmanagers: Alertmanagers):
        self.alertmanagers = alertmanagers

    async def on_outcome(self, view: JobView, ended: Ending) -> dict[str, Any] | None:
        """The outcome record's ``silence`` entry, or None for a Job without one; SilenceFailure to try again later."""
        held = rules.Held.of(view.annotations)
        if held is None:
            return None
        if rules.keeps(ended.outcome, held):
            return rules.record_entry(held, rules.KEPT)
        action, where = await expire(self.alertmanagers, held)
        if action == EXPIRED_NOW:
            SILENCES_EXPIRED_EARLY.labels(ended.outcome.lower()).inc()
            action = rules.EXPIRED
            log.info(f"silence expired: the remediation {ended.outcome.lower()}", extra={"event": "silence.expired", "silence": held.id, "job": view.name, "alertmanager": where, "outcome": ended.outcome})
        return rules.record_entry(held, action, where)
