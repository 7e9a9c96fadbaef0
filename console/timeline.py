"""The timeline: alerts as the archive holds them, each joined to the Jobs it became. No I/O here.

An alert is known by its message id (the envelope's id); a Job names the
message it came from in its ``openfero.io/message-id`` annotation, so the
two meet whichever arrives first. A Job's state is read from the Job itself:
the ``openfero.io/outcome`` annotation when the dispatchers wrote one,
else its status conditions; a Job deleted before it finished is "deleted".
An outcome record from the outcome stream stands in for a Job that has
expired. Everything here is derived: the console can drop it and read it
again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dispatcher.rendering import ANNOTATION_DEFINITION, ANNOTATION_MESSAGE_ID, LABEL_FINGERPRINT

ANNOTATION_OUTCOME = "openfero.io/outcome"

# Job states, as the page names them.
PENDING, RUNNING, SUCCEEDED, FAILED, DELETED = "pending", "running", "succeeded", "failed", "deleted"
# What an alert without a Job is, as far as the console can tell.
NO_JOB, NO_DEFINITION, DEAD_LETTERED, REFUSED = "no job yet", "no definition", "dead-lettered", "refused"
OUTCOMES = (PENDING, RUNNING, SUCCEEDED, FAILED, DELETED, NO_JOB, NO_DEFINITION, DEAD_LETTERED, REFUSED)
FINISHED = (SUCCEEDED, FAILED, DELETED)
_OUTCOME_WORDS = {"succeeded": SUCCEEDED, "failed": FAILED, "deleted": DELETED}

# Labels worth showing first; the others follow in name order.
PROMINENT_LABELS = ("namespace", "pod", "severity", "node", "deployment", "statefulset", "daemonset", "job_name", "service", "instance")


def parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass
class JobView:
    """One Job of openfero's, as the cluster last showed it."""

    name: str
    message_id: str
    definition: str
    created: datetime | None
    state: str
    reason: str = ""
    started: datetime | None = None
    finished: datetime | None = None
    fingerprint: str = ""

    @classmethod
    def of(cls, job: dict[str, Any], deleted: bool = False) -> JobView:
        meta = job.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        status = job.get("status") or {}
        state, reason, finished = job_state(job)
        if deleted and state not in FINISHED:
            state, reason = DELETED, "deleted before it finished"
        return cls(
            name=str(meta.get("name", "")),
            message_id=str(annotations.get(ANNOTATION_MESSAGE_ID, "")),
            definition=str(annotations.get(ANNOTATION_DEFINITION, "")),
            created=parse_time(meta.get("creationTimestamp")),
            state=state,
            reason=reason,
            started=parse_time(status.get("startTime")),
            finished=finished,
            fingerprint=str((meta.get("labels") or {}).get(LABEL_FINGERPRINT, "")),
        )

    @property
    def duration_s(self) -> float | None:
        """Remediation time: the Job's start to its end, once it ended."""
        start = self.started or self.created
        if start is None or self.finished is None or self.state not in (SUCCEEDED, FAILED):
            return None
        return max(0.0, (self.finished - start).total_seconds())


def job_state(job: dict[str, Any]) -> tuple[str, str, datetime | None]:
    """(state, reason, finished) of a Job: the outcome annotation if written, else its conditions."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    status = job.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if str(c.get("status")) == "True"]
    finished = parse_time(status.get("completionTime"))
    failed = next((c for c in conditions if c.get("type") in ("Failed", "FailureTarget")), None)
    if failed is not None:
        finished = finished or parse_time(failed.get("lastTransitionTime"))
    outcome = _OUTCOME_WORDS.get(str(annotations.get(ANNOTATION_OUTCOME, "")).lower())
    if outcome is not None:
        reason = str(failed.get("reason") or "") if failed is not None and outcome == FAILED else ""
        return outcome, reason, finished
    if any(c.get("type") in ("Complete", "SuccessCriteriaMet") for c in conditions):
        return SUCCEEDED, "", finished
    if failed is not None:
        return FAILED, str(failed.get("reason") or ""), finished
    if int(status.get("active") or 0) > 0:
        return RUNNING, "", None
    return PENDING, "", None


@dataclass
class AlertEntry:
    """One alert occurrence as ingest received it."""

    id: str
    received: datetime
    alertname: str
    status: str
    labels: dict[str, str]
    fingerprint: str
    starts_at: str
    # What the console's lookup says, for alerts without a Job: the definition, else why none.
    definition: str = ""
    refused: str = ""
    body: bytes = b""  # the message as archived, for a preview of this very alert
    version: int = 0

    def shown_labels(self) -> list[tuple[str, str]]:
        """The labels but alertname, the prominent ones first."""
        rank = {name: i for i, name in enumerate(PROMINENT_LABELS)}
        names = sorted((n for n in self.labels if n != "alertname"), key=lambda n: (rank.get(n, len(rank)), n))
        return [(n, self.labels[n]) for n in names]


@dataclass(frozen=True)
class OutcomeRecord:
    """An outcome read from the outcome stream (console.outcomes reads its format)."""

    message_id: str
    job: str
    outcome: str  # one of FINISHED, or a word of the storm controls the stream may carry
    reason: str = ""
    finished: datetime | None = None
    definition: str = ""


@dataclass(frozen=True)
class Row:
    """What the page shows for one alert: the entry, its latest Job, and the outcome in one word."""

    alert: AlertEntry
    job: JobView | None
    jobs: int  # how many Jobs it became (a forced replay makes another)
    outcome: str
    detail: str  # the reason or definition behind the outcome
    definition: str


@dataclass(frozen=True)
class TimelineFilter:
    alertname: str = ""
    status: str = ""
    outcome: str = ""
    since: datetime | None = None
    search: str = ""  # words; each must match a label (name=value exactly, else part of "name=value"), the Job or the id

    def matches(self, row: Row) -> bool:
        alert = row.alert
        if self.since is not None and alert.received < self.since:
            return False
        if self.alertname and alert.alertname != self.alertname:
            return False
        if self.status and alert.status != self.status:
            return False
        if self.outcome and row.outcome != self.outcome:
            return False
        return all(_word_matches(word, row) for word in self.search.split())


def _word_matches(word: str, row: Row) -> bool:
    labels = row.alert.labels
    name, sep, value = word.partition("=")
    if sep and name in labels:
        return labels[name] == value
    lowered = word.lower()
    haystack = [f"{k}={v}".lower() for k, v in labels.items()]
    haystack += [row.alert.id.lower(), row.alert.fingerprint.lower()]
    if row.job is not None:
        haystack.append(row.job.name.lower())
    return any(lowered in text for text in haystack)


class Timeline:
    """Alerts of the window and the Jobs they became. ``on_change`` hears the ids of alerts whose row changed."""

    def __init__(self, window: timedelta, max_alerts: int, on_change: Callable[[list[str]], None] = lambda ids: None):
        self.window = window
        self.max_alerts = max_alerts
        self.on_change = on_change
        self.alerts: OrderedDict[str, AlertEntry] = OrderedDict()  # in arrival order
        self.jobs: dict[str, JobView] = {}  # by name
        self.jobs_by_message: dict[str, list[str]] = {}
        self.outcomes: dict[str, OutcomeRecord] = {}  # by Job name
        self.outcomes_by_message: dict[str, OutcomeRecord] = {}
        self.dead: dict[str, str] = {}  # message id -> reason, from the latest dead-letter reading
        self.dropped = 0  # alerts let go because of max_alerts
        self._version = 0

    def _bump(self, entry: AlertEntry) -> None:
        self._version += 1
        entry.version = self._version

    # -- feeding -------------------------------------------------------------------------

    def add_alert(self, entry: AlertEntry) -> bool:
        """Keep an alert; False when it was known already (a stream read again after a reconnect)."""
        if entry.id in self.alerts:
            return False
        self._bump(entry)
        self.alerts[entry.id] = entry
        while len(self.alerts) > self.max_alerts:
            self.alerts.popitem(last=False)
            self.dropped += 1
        self.on_change([entry.id])
        return True

    def apply_job(self, event: str, job: dict[str, Any]) -> None:
        """A Job listed or watched: ADDED, MODIFIED or DELETED."""
        view = JobView.of(job, deleted=event == "DELETED")
        if not view.name:
            return
        old = self.jobs.get(view.name)
        if event == "DELETED" and old is not None and old.state in FINISHED:
            return  # expired after it ended: its end is what matters
        self.jobs[view.name] = view
        if old is None and view.message_id:
            self.jobs_by_message.setdefault(view.message_id, []).append(view.name)
        self.touch(view.message_id)

    def replace_jobs(self, jobs: Iterable[dict[str, Any]]) -> None:
        """A fresh list of every Job: those gone since are deleted (or kept as they ended)."""
        listed = {str((j.get("metadata") or {}).get("name", "")): j for j in jobs}
        for name, view in list(self.jobs.items()):
            if name not in listed and view.state not in FINISHED:
                view.state, view.reason = DELETED, "deleted before it finished"
                self.touch(view.message_id)
        for job in listed.values():
            self.apply_job("ADDED", job)

    def apply_outcome(self, record: OutcomeRecord) -> None:
        if record.job:
            self.outcomes[record.job] = record
        if record.message_id:
            self.outcomes_by_message[record.message_id] = record
        for records in (self.outcomes, self.outcomes_by_message):
            while len(records) > 2 * self.max_alerts:  # records without an end time are never pruned by age
                del records[next(iter(records))]
        self.touch(record.message_id)

    def set_dead_letters(self, dead: dict[str, str]) -> None:
        """The latest reading of the dead-letter queue (message id -> reason)."""
        changed = set(dead) ^ set(self.dead)
        self.dead = dict(dead)
        for message_id in changed:
            self.touch(message_id)

    def touch(self, message_id: str) -> None:
        """Tell the live pages that the row of ``message_id`` changed."""
        entry = self.alerts.get(message_id)
        if entry is not None:
            self._bump(entry)
            self.on_change([message_id])

    def prune(self, now: datetime) -> None:
        """Let go of alerts older than the window, and of Jobs and outcomes older than a day and the window."""
        start = now - self.window
        while self.alerts:
            first = next(iter(self.alerts.values()))
            if first.received >= start:
                break
            self.alerts.popitem(last=False)
        keep_from = now - max(self.window, timedelta(days=1))
        for name, view in list(self.jobs.items()):
            if view.created is not None and view.created < keep_from and view.state in FINISHED:
                del self.jobs[name]
                names = self.jobs_by_message.get(view.message_id, [])
                if name in names:
                    names.remove(name)
                if not names:
                    self.jobs_by_message.pop(view.message_id, None)
        for records in (self.outcomes, self.outcomes_by_message):
            for key, record in list(records.items()):
                if record.finished is not None and record.finished < keep_from:
                    del records[key]

    # -- reading --------------------------------------------------------------------------

    def row(self, entry: AlertEntry) -> Row:
        names = self.jobs_by_message.get(entry.id, [])
        jobs = [self.jobs[n] for n in names if n in self.jobs]
        latest = max(jobs, key=lambda j: j.created or datetime.min.replace(tzinfo=timezone.utc)) if jobs else None
        if latest is not None:
            record = self.outcomes.get(latest.name)
            if record is not None and latest.state not in FINISHED:
                return Row(entry, latest, len(jobs), record.outcome, record.reason, latest.definition)
            return Row(entry, latest, len(jobs), latest.state, latest.reason, latest.definition)
        record = self.outcomes_by_message.get(entry.id)
        if record is not None:  # the Job expired; its outcome was recorded
            return Row(entry, None, 0, record.outcome, record.reason or record.job, record.definition or entry.definition)
        if entry.id in self.dead:
            return Row(entry, None, 0, DEAD_LETTERED, self.dead[entry.id], entry.definition)
        if entry.refused:
            return Row(entry, None, 0, REFUSED, entry.refused, "")
        if not entry.definition:
            return Row(entry, None, 0, NO_DEFINITION, "", "")
        return Row(entry, None, 0, NO_JOB, "", entry.definition)

    def rows(self, selector: TimelineFilter = TimelineFilter()) -> Iterator[Row]:
        """Matching rows, newest first."""
        for entry in reversed(self.alerts.values()):
            if selector.since is not None and entry.received < selector.since:
                break  # arrival order is time order, near enough: the archive is written as alerts arrive
            row = self.row(entry)
            if selector.matches(row):
                yield row

    def alertnames(self) -> list[str]:
        return sorted({e.alertname for e in self.alerts.values()})

    def jobs_of(self, definition: str) -> list[JobView]:
        return [j for j in self.jobs.values() if j.definition == definition]


@dataclass
class DefinitionStats:
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    deleted: int = 0
    last: JobView | None = None
    recent: list[JobView] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        ended = self.succeeded + self.failed
        return self.succeeded / ended if ended else None


def definition_stats(jobs: Iterable[JobView], since: datetime) -> dict[str, DefinitionStats]:
    """Per definition: Jobs active now, and the outcomes of those created since ``since``."""
    stats: dict[str, DefinitionStats] = {}
    for job in jobs:
        s = stats.setdefault(job.definition, DefinitionStats())
        if job.state in (PENDING, RUNNING):
            s.active += 1
        if job.created is not None and job.created >= since:
            if job.state == SUCCEEDED:
                s.succeeded += 1
            elif job.state == FAILED:
                s.failed += 1
            elif job.state == DELETED:
                s.deleted += 1
        if s.last is None or (job.created and s.last.created and job.created > s.last.created):
            s.last = job
    return stats
