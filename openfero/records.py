"""Messages as operators see them, and the filters that select them. No I/O here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared import headers as h
from shared.envelope import Envelope, InvalidEnvelope


def _when(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class Record:
    """One alert message: its body, headers, the envelope if it decodes, and its time."""

    id: str
    body: bytes
    headers: dict[str, Any]
    envelope: Envelope | None
    when: datetime | None  # dead letters: the last failure; the archive: when ingest received it

    @classmethod
    def of(cls, body: bytes, headers: dict[str, Any] | None, message_id: str | None, dead: bool) -> Record:
        headers = dict(headers or {})
        try:
            envelope: Envelope | None = Envelope.from_json(body)
        except InvalidEnvelope:
            envelope = None
        if dead:
            when = _when(headers.get(h.LAST_FAILURE, ""))
            if when is None and headers.get("x-death"):  # dead-lettered by the broker itself
                when = _when(headers["x-death"][0].get("time"))
        else:
            when = _when(envelope.receivedAt) if envelope else None
        # A message without an id (published by hand) is named by its body.
        key = message_id or ("sha-" + hashlib.sha256(body).hexdigest()[:16])
        return cls(key, body, headers, envelope, when)

    @property
    def alertname(self) -> str:
        return self.envelope.alert.alertname if self.envelope else ""

    @property
    def status(self) -> str:
        return self.envelope.alert.status if self.envelope else ""

    @property
    def fingerprint(self) -> str:
        return self.envelope.alert.fingerprint if self.envelope else ""

    @property
    def reason(self) -> str:
        """Why it was dead-lettered, in one line."""
        if h.ERROR in self.headers:
            return f"{self.headers.get(h.ERROR_CLASS, '')}: {self.headers[h.ERROR]}"
        deaths = self.headers.get("x-death") or []
        if deaths:
            return f"broker: {deaths[0].get('reason', '')}"
        return ""

    @property
    def attempts(self) -> int:
        if h.ATTEMPTS in self.headers:
            return int(self.headers[h.ATTEMPTS])
        deaths = self.headers.get("x-death") or []
        return int(deaths[0].get("count", 0)) if deaths else 0

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "when": self.when.isoformat() if self.when else None,
            "alertname": self.alertname,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "reason": self.reason,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class Filter:
    """Every field set must match; an empty filter matches everything."""

    alertname: str | None = None
    status: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    reason: str | None = None  # a case-insensitive part of the reason
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    ids: frozenset[str] | None = None  # message ids: only these records

    def matches(self, record: Record) -> bool:
        if self.ids is not None and record.id not in self.ids:
            return False
        if self.since is not None and (record.when is None or record.when < self.since):
            return False
        if self.until is not None and (record.when is None or record.when >= self.until):
            return False
        if self.reason is not None and self.reason.lower() not in record.reason.lower():
            return False
        if self.alertname is None and self.status is None and not self.labels and self.fingerprint is None:
            return True
        if record.envelope is None:
            return False
        alert = record.envelope.alert
        return (
            (self.alertname is None or alert.alertname == self.alertname)
            and (self.status is None or alert.status == self.status)
            and (self.fingerprint is None or alert.fingerprint == self.fingerprint)
            and all(alert.labels.get(k) == v for k, v in self.labels.items())
        )
