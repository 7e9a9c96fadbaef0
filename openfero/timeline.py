"""Alerts received and what became of them: the archive joined with the outcome records. No I/O here.

An alert occurrence (fingerprint, status, startsAt) may have been received
several times (Alertmanager repeats a firing group every repeat_interval):
it is one entry, with the time it was first received and how many times.
An outcome record belongs to the occurrence of the message that created
its Job (the Job's ``openfero.io/message-id``, which replays keep); when
that message is outside the window read, to the occurrence with the same
fingerprint, status and startsAt. An occurrence can have several Jobs
(``openfero.io/rerun-after`` windows, forced replays) and none yet (still
running, no definition, tracking off). Records are kept once per Job uid:
a leader that died before it removed a Job's finalizer may have published
its record twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatcher.naming import label_value
from openfero.records import Record

NO_OUTCOME = "none"


@dataclass
class Occurrence:
    alertname: str
    status: str
    fingerprint: str
    starts_at: str
    received: datetime
    notifications: int = 0
    message_ids: set[str] = field(default_factory=set)
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "received": self.received.isoformat(),
            "alertname": self.alertname,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "startsAt": self.starts_at,
            "notifications": self.notifications,
            "jobs": [
                {
                    k: o.get(k)
                    for k in ("job", "namespace", "outcome", "reason", "message", "definition", "createdAt", "finishedAt", "recordedAt", "remediationSeconds", "timeToRemediateSeconds", "runId", "silence")
                }
                for o in self.outcomes
            ],
        }


@dataclass(frozen=True)
class HistoryFilter:
    since: datetime | None = None  # received at or after
    alertname: str | None = None
    outcome: str | None = None  # Succeeded, Failed, Deleted, or NO_OUTCOME; any case

    def wants_alert(self, record: Record) -> bool:
        if record.envelope is None or record.when is None:
            return False
        if self.since is not None and record.when < self.since:
            return False
        return self.alertname is None or record.alertname == self.alertname

    def wants(self, occurrence: Occurrence) -> bool:
        if self.outcome is None:
            return True
        wanted = self.outcome.lower()
        if wanted == NO_OUTCOME:
            return not occurrence.outcomes
        return any(str(o.get("outcome", "")).lower() == wanted for o in occurrence.outcomes)


def join(alerts: list[Record], outcomes: list[dict[str, Any]], selector: HistoryFilter) -> list[Occurrence]:
    """The occurrences ``selector`` wants, oldest first, each with its outcomes."""
    occurrences: dict[tuple[str, str, str], Occurrence] = {}
    by_message: dict[str, Occurrence] = {}
    for record in alerts:
        if not selector.wants_alert(record):
            continue
        assert record.envelope is not None and record.when is not None
        alert = record.envelope.alert
        key = (alert.fingerprint, alert.status, alert.starts_at)
        found = occurrences.get(key)
        if found is None:
            found = occurrences[key] = Occurrence(alert.alertname, alert.status, alert.fingerprint, alert.starts_at, record.when)
        found.received = min(found.received, record.when)
        found.notifications += 1
        found.message_ids.add(record.id)
        by_message[record.id] = found
    # Jobs carry the fingerprint as a label value: match on that form.
    by_labels = {(label_value(o.fingerprint), label_value(o.status), o.starts_at): o for o in occurrences.values()}
    seen: set[str] = set()
    for outcome in outcomes:
        uid = str(outcome.get("uid") or outcome.get("job") or "")
        if not uid or uid in seen:
            continue
        seen.add(uid)
        owner = by_message.get(str(outcome.get("messageId") or "")) or by_labels.get(
            (str(outcome.get("fingerprint") or ""), str(outcome.get("alertStatus") or ""), str(outcome.get("startsAt") or ""))
        )
        if owner is not None:
            owner.outcomes.append(outcome)
    for occurrence in occurrences.values():
        occurrence.outcomes.sort(key=lambda o: str(o.get("createdAt") or ""))
    return sorted((o for o in occurrences.values() if selector.wants(o)), key=lambda o: o.received)


def table(occurrences: list[Occurrence]) -> str:
    rows = [("RECEIVED", "ALERTNAME", "STATUS", "FINGERPRINT", "SEEN", "JOB", "OUTCOME", "TOOK", "SILENCE", "REASON")]
    for occurrence in occurrences:
        received = occurrence.received.strftime("%Y-%m-%d %H:%M:%S")
        head = (received, occurrence.alertname or "-", occurrence.status or "-", occurrence.fingerprint or "-", str(occurrence.notifications))
        if not occurrence.outcomes:
            rows.append((*head, "-", "-", "-", "-", ""))
        for outcome in occurrence.outcomes:
            took = outcome.get("remediationSeconds")
            reason = "" if outcome.get("outcome") == "Succeeded" else str(outcome.get("reason") or "")
            silence = outcome["silence"] if isinstance(outcome.get("silence"), dict) else {}
            took_text = f"{took:g}s" if took is not None else "-"
            rows.append((*head, str(outcome.get("job") or "-"), str(outcome.get("outcome") or "-"), took_text, str(silence.get("action") or "-"), reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]).rstrip() for row in rows)
