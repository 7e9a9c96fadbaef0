"""The message envelope: one alert of a webhook, as it travels on the broker.

This module is the only definition of the format. It reads Alertmanager's
webhook (version 4) leniently, as Alertmanager and the Go original do: field
names in any case, optional fields missing. No I/O here.

Envelope, schema version 1 (JSON)::

    {"schema": 1, "id": "<uuid4 hex>", "receivedAt": "<RFC 3339 UTC>",
     "alert": {"status", "labels", "annotations", "startsAt", "endsAt",
               "generatorURL", "fingerprint"},
     "group": {"version", "status", "receiver", "groupKey", "groupLabels",
               "commonLabels", "commonAnnotations", "externalURL",
               "truncatedAlerts"}}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

SCHEMA_VERSION = 1

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF


class InvalidWebhook(ValueError):
    """The webhook body is well-formed JSON but not an Alertmanager webhook."""


class InvalidEnvelope(ValueError):
    """A message on the broker is not an envelope this version can read."""


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' label-set fingerprint: FNV-1a 64 over the sorted pairs, each part ended by 0xff."""
    data = b"".join(b"%s\xff%s\xff" % (name.encode(), labels[name].encode()) for name in sorted(labels))
    h = _FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & _MASK64
    return f"{h:016x}"


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    startsAt: str = ""
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Group:
    version: str = ""
    status: str = ""
    receiver: str = ""
    groupKey: str = ""
    groupLabels: dict[str, str] = field(default_factory=dict)
    commonLabels: dict[str, str] = field(default_factory=dict)
    commonAnnotations: dict[str, str] = field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: int = 0


@dataclass(frozen=True)
class Envelope:
    id: str
    receivedAt: str
    alert: Alert
    group: Group
    schema: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "schema": self.schema,
                "id": self.id,
                "receivedAt": self.receivedAt,
                "alert": self.alert.__dict__,
                "group": self.group.__dict__,
            }
        )

    @classmethod
    def from_json(cls, body: bytes) -> Envelope:
        """Decode a message body; anything unreadable raises InvalidEnvelope."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidEnvelope(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidEnvelope("not a JSON object")
        if data.get("schema") != SCHEMA_VERSION:
            raise InvalidEnvelope(f"schema {data.get('schema')!r} is not {SCHEMA_VERSION}")
        try:
            alert = _read_alert(data["alert"], "alert", default_status="")
            group = Group(**data["group"])
            return cls(id=str(data["id"]), receivedAt=str(data["receivedAt"]), alert=alert, group=group)
        except InvalidWebhook as exc:
            raise InvalidEnvelope(str(exc)) from None
        except (KeyError, TypeError) as exc:
            raise InvalidEnvelope(f"missing or unexpected field: {exc}") from None


def _folded(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's fields keyed by lower-cased name (Go's encoding/json matches so)."""
    return {str(k).lower(): v for k, v in obj.items()}


def _string_map(value: Any, where: str, required: bool = False) -> dict[str, str]:
    if value is None:
        if required:
            raise InvalidWebhook(f"{where}: required")
        return {}
    if not isinstance(value, dict):
        raise InvalidWebhook(f"{where}: must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidWebhook(f"{where}.{key}: must be a string, got {type(item).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidWebhook(f"{where}: must be a string, got {type(value).__name__}")
    return value


def _status_from(ends_at: str) -> str:
    """Alertmanager's rule when no status is sent: resolved once endsAt has passed."""
    try:
        ends = datetime.fromisoformat(ends_at)
    except ValueError:
        return "firing"
    if ends.year <= 1 or ends.tzinfo is None:
        return "firing"
    return "resolved" if ends <= datetime.now(timezone.utc) else "firing"


def _read_alert(raw: Any, where: str, default_status: str) -> Alert:
    if not isinstance(raw, dict):
        raise InvalidWebhook(f"{where}: must be an object")
    f = _folded(raw)
    labels = _string_map(f.get("labels"), f"{where}.labels", required=True)
    ends_at = _string(f.get("endsat"), f"{where}.endsAt")
    return Alert(
        status=_string(f.get("status"), f"{where}.status") or default_status or _status_from(ends_at),
        labels=labels,
        annotations=_string_map(f.get("annotations"), f"{where}.annotations"),
        startsAt=_string(f.get("startsat"), f"{where}.startsAt"),
        endsAt=ends_at,
        generatorURL=_string(f.get("generatorurl"), f"{where}.generatorURL"),
        fingerprint=_string(f.get("fingerprint"), f"{where}.fingerprint") or fingerprint(labels),
    )


def _read_group(f: dict[str, Any]) -> Group:
    truncated = f.get("truncatedalerts") or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool):
        raise InvalidWebhook("truncatedAlerts: must be an integer")
    version = f.get("version")
    return Group(
        version=str(version) if isinstance(version, (str, int)) else "",
        status=_string(f.get("status"), "status"),
        receiver=_string(f.get("receiver"), "receiver"),
        groupKey=_string(f.get("groupkey"), "groupKey"),
        groupLabels=_string_map(f.get("grouplabels"), "groupLabels"),
        commonLabels=_string_map(f.get("commonlabels"), "commonLabels"),
        commonAnnotations=_string_map(f.get("commonannotations"), "commonAnnotations"),
        externalURL=_string(f.get("externalurl"), "externalURL"),
        truncatedAlerts=truncated,
    )


def envelopes_from_webhook(payload: Any, now: datetime | None = None) -> list[Envelope]:
    """Split a decoded webhook into one envelope per alert.

    Raises InvalidWebhook, naming the offending field, if any part is unusable:
    a webhook is taken whole or not at all.
    """
    if not isinstance(payload, dict):
        raise InvalidWebhook("body: must be a JSON object")
    f = _folded(payload)
    alerts = f.get("alerts")
    if alerts is None:
        alerts = []
    if not isinstance(alerts, list):
        raise InvalidWebhook("alerts: must be a list")
    group = _read_group(f)
    received = (now or datetime.now(timezone.utc)).isoformat(timespec="microseconds")
    return [
        Envelope(
            id=uuid.uuid4().hex,
            receivedAt=received,
            alert=_read_alert(raw, f"alerts[{i}]", default_status=group.status),
            group=group,
        )
        for i, raw in enumerate(alerts)
    ]
