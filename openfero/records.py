"""Messages as operators see them, and the filters that select them. No I/O here.

Headers are whatever a publisher or a broker put there: a record reads
them without trusting their types, and shows what it cannot read as it is
(an attempts header of "x" shows as "x"), so that one bad record never
stops a listing of the others.
"""

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


def _deaths(headers: dict[str, Any]) -> list[dict[str, Any]]:
    """The broker's x-death entries, those that are tables."""
    deaths = headers.get("x-death")
    return [d for d in deaths if isinstance(d, dict)] if isinstance(deaths, list) else []


def _text(value: Any) -> str:
    """A header as text: bytes decoded (not UTF-8: replaced), anything else as Python prints it."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode(errors="replace")
    return str(value)


def _count(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes, bytearray)):
        try:
            return int(value)
        except ValueError:
            return _text(value)
    return value


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
            when = _when(headers.get(h.LAST_FAILURE, "") or headers.get(h.PARKED_AT, ""))
            if when is None and _deaths(headers):  # dead-lettered by the broker itself
                when = _when(_deaths(headers)[0].get("time"))
        else:
            when = _when(envelope.received_at) if envelope else None
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
            return f"{_text(self.headers.get(h.ERROR_CLASS, ''))}: {_text(self.headers[h.ERROR])}"
        deaths = _deaths(self.headers)
        if deaths:
            return f"broker: {_text(deaths[0].get('reason', ''))}"
        return ""

    @property
    def attempts(self) -> Any:
        """The attempts made, a number; a header that holds no number, as it is."""
        if h.ATTEMPTS in self.headers:
            return _count(self.headers[h.ATTEMPTS])
        deaths = _deaths(self.headers)
        return _count(deaths[0].get("count", 0)) if deaths else 0

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
