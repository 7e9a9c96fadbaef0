"""What a Job's state says about its remediation, and what is recorded about it. No I/O here.

How a Job ends (``ending``):
- a condition ``Complete`` that is True: **Succeeded**;
- a condition ``Failed`` that is True: **Failed**, with its reason
  (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy, ...);
  ``SuccessCriteriaMet`` and ``FailureTarget`` only announce the end while
  pods still terminate, so they are not an end yet;
- ``deletionTimestamp`` set before either: **Deleted** (before it finished).
  A Job deleted after it finished (its TTL, someone tidying up) keeps the
  outcome it finished with.

What the leader does next with a Job (``next_step``): nothing unless the
Job carries the finalizer ``openfero.io/outcome`` (Jobs created with
tracking off, and Jobs whose outcome is fully recorded, do not); **Mark**
an ended Job that has no ``openfero.io/outcome`` annotation yet (the
resourceVersion-checked write that counts it); **Finish** one that has it
(record, status, Event, then remove the finalizer); **Running** once it
has active pods (the Operarius status says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatcher.rendering import (
    ANNOTATION_DEFINITION,
    ANNOTATION_MESSAGE_ID,
    ANNOTATION_OUTCOME,
    ANNOTATION_RUN_ID,
    ANNOTATION_STARTS_AT,
    FINALIZER_OUTCOME,
    LABEL_ALERTNAME,
    LABEL_FINGERPRINT,
    LABEL_STATUS,
)

SUCCEEDED, FAILED, DELETED = "Succeeded", "Failed", "Deleted"
OUTCOMES = (SUCCEEDED, FAILED, DELETED)
RECORD_VERSION = 1
# Longest value of the definition label; a definition no longer known is counted as this.
MAX_LABEL = 63
UNKNOWN_DEFINITION = "unknown"


def parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class DefinitionRef:
    """The definition a Job came from, read from its ``openfero.io/definition`` annotation."""

    kind: str  # "ConfigMap" or "Operarius"
    namespace: str
    name: str

    @classmethod
    def parse(cls, annotation: str) -> DefinitionRef | None:
        # "<ns>/Operarius/<name>/jobTemplate" or "<ns>/<configmap>/<data key>" (dispatcher.rendering)
        parts = annotation.split("/")
        if len(parts) == 4 and parts[1] == "Operarius":
            return cls("Operarius", parts[0], parts[2])
        if len(parts) == 3 and all(parts):
            return cls("ConfigMap", parts[0], parts[1])
        return None

    def label(self, known: bool) -> str:
        """The value of the metrics' definition label: bounded by the definitions that exist."""
        return self.name[:MAX_LABEL] if known else UNKNOWN_DEFINITION


@dataclass(frozen=True)
class JobView:
    """What the tracker keeps of a Job: a few fields, not the whole object."""

    name: str
    namespace: str
    uid: str
    resource_version: str
    created: datetime | None
    finalizers: tuple[str, ...]
    annotations: dict[str, str]
    labels: dict[str, str]
    deleted_at: datetime | None
    active: int
    conditions: tuple[dict[str, Any], ...] = field(default=())
    completion_time: datetime | None = None

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobView:
        meta = job.get("metadata") or {}
        status = job.get("status") or {}
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""),
            resource_version=str(meta.get("resourceVersion", "")),
            created=parse_time(meta.get("creationTimestamp")),
            finalizers=tuple(meta.get("finalizers") or ()),
            annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items() if str(k).startswith("openfero.io/")},
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items() if str(k).startswith("openfero.io/")},
            deleted_at=parse_time(meta.get("deletionTimestamp")) if meta.get("deletionTimestamp") else None,
            active=int(status.get("active") or 0),
            conditions=tuple(c for c in status.get("conditions") or () if c.get("type") in ("Complete", "Failed")),
            completion_time=parse_time(status.get("completionTime")) if status.get("completionTime") else None,
        )

    @property
    def tracked(self) -> bool:
        return FINALIZER_OUTCOME in self.finalizers

    @property
    def marked(self) -> str:
        """The outcome already counted for this Job, or ""."""
        value = self.annotations.get(ANNOTATION_OUTCOME, "")
        return value if value in OUTCOMES else ""

    @property
    def definition(self) -> DefinitionRef | None:
        return DefinitionRef.parse(self.annotations.get(ANNOTATION_DEFINITION, ""))

    @property
    def operarius(self) -> tuple[str, str] | None:
        ref = self.definition
        return (ref.namespace, ref.name) if ref is not None and ref.kind == "Operarius" else None

    @property
    def alertname(self) -> str:
        return self.labels.get(LABEL_ALERTNAME, "")

    @property
    def fingerprint(self) -> str:
        return self.labels.get(LABEL_FINGERPRINT, "")

    @property
    def message_id(self) -> str:
        return self.annotations.get(ANNOTATION_MESSAGE_ID, "")


@dataclass(frozen=True)
class Ending:
    outcome: str  # SUCCEEDED, FAILED or DELETED
    reason: str  # the Job condition's reason (BackoffLimitExceeded ...), or why there is none
    message: str
    finished_at: datetime | None  # None for DELETED: it never finished


def ending(view: JobView) -> Ending | None:
    """How the Job ended, or None while it runs."""
    for condition in view.conditions:
        if str(condition.get("status")) != "True":
            continue
        at = parse_time(condition.get("lastTransitionTime")) or view.completion_time
        if condition.get("type") == "Complete":
            return Ending(SUCCEEDED, str(condition.get("reason") or "Complete"), str(condition.get("message") or ""), view.completion_time or at)
        if condition.get("type") == "Failed":
            return Ending(FAILED, str(condition.get("reason") or "Failed"), str(condition.get("message") or ""), at)
    if view.deleted_at is not None:
        return Ending(DELETED, "DeletedBeforeFinishing", "the Job was deleted before it finished", None)
    return None


def ending_of_marked(view: JobView) -> Ending | None:
    """The Ending of a Job already marked: its outcome is the mark's, whatever happened since."""
    if not view.marked:
        return None
    found = ending(view)
    if found is not None and found.outcome == view.marked:
        return found
    # Deleted after the mark said it finished, or the reverse cannot happen: the mark rules.
    if view.marked == DELETED:
        return Ending(DELETED, "DeletedBeforeFinishing", "the Job was deleted before it finished", None)
    return Ending(view.marked, view.marked, "", found.finished_at if found else None)


@dataclass(frozen=True)
class Mark:
    ending: Ending


@dataclass(frozen=True)
class Finish:
    ending: Ending


@dataclass(frozen=True)
class Running:
    pass


@dataclass(frozen=True)
class Wait:
    pass


Step = Mark | Finish | Running | Wait


def next_step(view: JobView) -> Step:
    if not view.tracked:
        return Wait()
    if view.marked:
        done = ending_of_marked(view)
        assert done is not None
        return Finish(done)
    ended = ending(view)
    if ended is not None:
        return Mark(ended)
    if view.active > 0:
        return Running()
    return Wait()


def mark_patch(view: JobView, ended: Ending) -> dict[str, Any]:
    """The merge patch that counts an outcome: only one writer of the version it names can win."""
    return {"metadata": {"resourceVersion": view.resource_version, "annotations": {ANNOTATION_OUTCOME: ended.outcome}}}


def release_patch(view: JobView) -> dict[str, Any]:
    """The merge patch that removes openfero's finalizer (a list is replaced whole, so the version guards it)."""
    return {"metadata": {"resourceVersion": view.resource_version, "finalizers": [f for f in view.finalizers if f != FINALIZER_OUTCOME]}}


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def durations(view: JobView, ended: Ending) -> tuple[float | None, float | None]:
    """(Job created -> finished, alert startsAt -> finished) in seconds; None where unknown or not finished."""
    starts_at = parse_time(view.annotations.get(ANNOTATION_STARTS_AT, ""))
    if starts_at is not None and starts_at.year < 2:  # Go's zero time: the sender gave none
        starts_at = None
    return seconds_between(view.created, ended.finished_at), seconds_between(starts_at, ended.finished_at)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def record(view: JobView, ended: Ending, recorded_at: datetime, recorded_by: str) -> dict[str, Any]:
    """The outcome record published to the outcome stream (``openfero history`` reads it)."""
    remediation_s, to_remediate_s = durations(view, ended)
    ref = view.definition
    return {
        "version": RECORD_VERSION,
        "job": view.name,
        "namespace": view.namespace,
        "uid": view.uid,
        "outcome": ended.outcome,
        "reason": ended.reason,
        "message": ended.message,
        "definition": view.annotations.get(ANNOTATION_DEFINITION, ""),
        "definitionKind": ref.kind if ref else "",
        "definitionName": ref.name if ref else "",
        "alertname": view.alertname,
        "alertStatus": view.labels.get(LABEL_STATUS, ""),
        "fingerprint": view.fingerprint,
        "startsAt": view.annotations.get(ANNOTATION_STARTS_AT, ""),
        "messageId": view.message_id,
        "runId": view.annotations.get(ANNOTATION_RUN_ID, ""),
        "createdAt": _iso(view.created),
        "finishedAt": _iso(ended.finished_at),
        "recordedAt": recorded_at.isoformat(),
        "remediationSeconds": remediation_s,
        "timeToRemediateSeconds": to_remediate_s,
        "recordedBy": recorded_by,
    }


EVENT_REASONS = {SUCCEEDED: "RemediationSucceeded", FAILED: "RemediationFailed", DELETED: "RemediationDeleted"}


def event(view: JobView, ended: Ending, involved: dict[str, Any], identity: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event on the definition (Operarius or ConfigMap) for one finished remediation.

    Its name comes from the Job's uid, so that writing it twice (a leader
    that died between the Event and the finalizer) finds it already there.
    """
    remediation_s, _ = durations(view, ended)
    verb = {SUCCEEDED: "succeeded", FAILED: f"failed ({ended.reason})", DELETED: "was deleted before it finished"}[ended.outcome]
    took = f" after {remediation_s:g} s" if remediation_s is not None else ""
    alert = f"alert {view.alertname or '?'} ({view.labels.get(LABEL_STATUS, '?')}, fingerprint {view.fingerprint or '?'})"
    detail = f": {ended.message}" if ended.outcome == FAILED and ended.message else ""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = involved.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{view.name}.{view.uid.replace('-', '')[:12] or 'outcome'}", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "related": {"apiVersion": "batch/v1", "kind": "Job", "name": view.name, "namespace": view.namespace, "uid": view.uid},
        "reason": EVENT_REASONS[ended.outcome],
        "message": f"Job {view.namespace}/{view.name} {verb}{took}, for {alert}{detail}"[:1024],
        "type": "Normal" if ended.outcome == SUCCEEDED else "Warning",
        "source": {"component": "openfero-dispatcher"},
        "reportingComponent": "openfero.io/dispatcher",
        "reportingInstance": identity[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
