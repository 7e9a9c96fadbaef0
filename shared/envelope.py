"""The message envelope: one alert of a webhook, as it travels on the broker.

This module is the only definition of the format: ``Envelope.to_json`` writes
it, ``Envelope.from_json`` reads it (the current schema and every older one
that may still wait in a queue, the dead-letter queue or the archive), each
field by the name below and nothing else; in memory the fields have
Python's names (``received_at``, ``starts_at``, ``group_key`` ...). It also
reads Alertmanager's webhook (version 4), leniently as Alertmanager and the
Go original do: field names in any case, optional fields missing. No I/O
here.

Envelope, schema version 2 (JSON; fields with empty values are left out)::

    {"schema": 2, "id": "<uuid4 hex>", "receivedAt": "<RFC 3339 UTC>",
     "alert": {"status", "labels", "annotations", "startsAt", "endsAt",
               "generatorURL", "fingerprint"},
     "group": {"version", "status", "receiver", "groupKey", "externalURL",
               "truncatedAlerts",
               "groupLabels": [<entry>...], "commonLabels": [<entry>...],
               "commonAnnotations": [<entry>...]}}

An entry of the three group maps is either a name, whose value is the
alert's own (``labels`` for the two label maps, ``annotations`` for
``commonAnnotations``), or a ``[name, value]`` pair for a value the alert
does not share. Alertmanager's group maps are always subsets of each
alert's own, so a message names them instead of copying them: the group
context of a webhook of N alerts is not stored N times over. The reader
restores the values, so in memory ``Group`` holds the maps as sent.

Schema 1 (until openfero 0.1) carried the three maps whole, as objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

SCHEMA_VERSION = 2

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
    starts_at: str = ""
    ends_at: str = ""
    generator_url: str = ""
    fingerprint: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Group:
    version: str = ""
    status: str = ""
    receiver: str = ""
    group_key: str = ""
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0


@dataclass(frozen=True)
class Envelope:
    id: str
    received_at: str
    alert: Alert
    group: Group
    schema: int = SCHEMA_VERSION
    # The encoded form, kept once written: ingest checks a message's size and
    # publishes the same bytes, possibly in another process than the one
    # that wrote them.
    _wire: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def to_json(self) -> bytes:
        """The message body, in the current schema."""
        if self._wire is None:
            object.__setattr__(self, "_wire", orjson.dumps(_write(self)))
        return self._wire  # type: ignore[return-value]

    @classmethod
    def from_json(cls, body: bytes) -> Envelope:
        """Decode a message body of any schema this version knows; anything else raises InvalidEnvelope."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidEnvelope(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidEnvelope("not a JSON object")
        schema = data.get("schema")
        reader = _READERS.get(schema) if isinstance(schema, int) and not isinstance(schema, bool) else None
        if reader is None:
            raise InvalidEnvelope(f"schema {schema!r} is not one of {sorted(_READERS)}")
        alert, group = reader(data)
        return cls(id=_required(data, "id", ""), received_at=_required(data, "receivedAt", ""), alert=alert, group=group)


# -- the wire format: its writer and its reader ------------------------------------------------
#
# Field names are exactly as written (Alertmanager's spelling); a field the
# writer leaves out is read as empty. Unknown fields are ignored, so that a
# message of a newer minor revision still reads.


def shared_entries(entries: dict[str, str], own: dict[str, str]) -> list[str | list[str]]:
    """A group map as the message carries it: names where the alert has the same value, else pairs."""
    return [name if own.get(name) == value else [name, value] for name, value in entries.items()]


def _write(envelope: Envelope) -> dict[str, Any]:
    alert, group = envelope.alert, envelope.group
    wire_alert = {
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }
    wire_group = {
        "version": group.version,
        "status": group.status,
        "receiver": group.receiver,
        "groupKey": group.group_key,
        "externalURL": group.external_url,
        "truncatedAlerts": group.truncated_alerts,
        "groupLabels": shared_entries(group.group_labels, alert.labels),
        "commonLabels": shared_entries(group.common_labels, alert.labels),
        "commonAnnotations": shared_entries(group.common_annotations, alert.annotations),
    }
    return {
        "schema": SCHEMA_VERSION,
        "id": envelope.id,
        "receivedAt": envelope.received_at,
        "alert": {k: v for k, v in wire_alert.items() if v or k == "labels"},
        "group": {k: v for k, v in wire_group.items() if v},
    }


def _required(data: dict[str, Any], name: str, where: str) -> str:
    if name not in data:
        raise InvalidEnvelope(f"{where}{name}: required")
    return _text(data, name, where)


def _text(data: dict[str, Any], name: str, where: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise InvalidEnvelope(f"{where}{name}: must be a string")
    return value


def _texts(data: dict[str, Any], name: str, where: str, required: bool = False) -> dict[str, str]:
    value = data.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise InvalidEnvelope(f"{where}{name}: must be an object of strings")
    return value


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise InvalidEnvelope(f"{name}: must be an object")
    return value


def _read_alert(data: dict[str, Any]) -> Alert:
    """The alert of a message, schema 1 and 2 alike; a message left out status or fingerprint only if written by hand."""
    raw = _object(data, "alert")
    labels = _texts(raw, "labels", "alert.", required=True)
    ends_at = _text(raw, "endsAt", "alert.")
    return Alert(
        status=_text(raw, "status", "alert.") or _status_from(ends_at),
        labels=labels,
        annotations=_texts(raw, "annotations", "alert."),
        starts_at=_text(raw, "startsAt", "alert."),
        ends_at=ends_at,
        generator_url=_text(raw, "generatorURL", "alert."),
        fingerprint=_text(raw, "fingerprint", "alert.") or fingerprint(labels),
    )


def _restored(entries: Any, own: dict[str, str], where: str) -> dict[str, str]:
    """A group map from its entries: a name takes the alert's own value, a pair carries its own."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise InvalidEnvelope(f"group.{where}: must be a list")
    restored = {}
    for entry in entries:
        if isinstance(entry, str) and entry in own:
            restored[entry] = own[entry]
        elif isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry):
            restored[entry[0]] = entry[1]
        else:
            raise InvalidEnvelope(f"group.{where}: {str(entry)[:80]!r} is neither a name the alert has nor a [name, value] pair")
    return restored


def _group_fields(raw: dict[str, Any]) -> dict[str, Any]:
    truncated = raw.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool):
        raise InvalidEnvelope("group.truncatedAlerts: must be an integer")
    return {
        "version": _text(raw, "version", "group."),
        "status": _text(raw, "status", "group."),
        "receiver": _text(raw, "receiver", "group."),
        "group_key": _text(raw, "groupKey", "group."),
        "external_url": _text(raw, "externalURL", "group."),
        "truncated_alerts": truncated,
    }


def _read_schema_2(data: dict[str, Any]) -> tuple[Alert, Group]:
    alert = _read_alert(data)
    raw = _object(data, "group")
    group = Group(
        **_group_fields(raw),
        group_labels=_restored(raw.get("groupLabels"), alert.labels, "groupLabels"),
        common_labels=_restored(raw.get("commonLabels"), alert.labels, "commonLabels"),
        common_annotations=_restored(raw.get("commonAnnotations"), alert.annotations, "commonAnnotations"),
    )
    return alert, group


_SCHEMA_1_GROUP = {"version", "status", "receiver", "groupKey", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "truncatedAlerts"}


def _read_schema_1(data: dict[str, Any]) -> tuple[Alert, Group]:
    alert = _read_alert(data)
    raw = _object(data, "group")
    unknown = set(raw) - _SCHEMA_1_GROUP
    if unknown:
        raise InvalidEnvelope(f"group: unexpected fields {sorted(unknown)}")
    group = Group(
        **_group_fields(raw),
        group_labels=_texts(raw, "groupLabels", "group."),
        common_labels=_texts(raw, "commonLabels", "group."),
        common_annotations=_texts(raw, "commonAnnotations", "group."),
    )
    return alert, group


_READERS: dict[int, Callable[[dict[str, Any]], tuple[Alert, Group]]] = {1: _read_schema_1, 2: _read_schema_2}


# -- reading webhooks -----------------------------------------------------------------------


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


def _webhook_alert(raw: Any, where: str, default_status: str) -> Alert:
    if not isinstance(raw, dict):
        raise InvalidWebhook(f"{where}: must be an object")
    f = _folded(raw)
    labels = _string_map(f.get("labels"), f"{where}.labels", required=True)
    ends_at = _string(f.get("endsat"), f"{where}.endsAt")
    return Alert(
        status=_string(f.get("status"), f"{where}.status") or default_status or _status_from(ends_at),
        labels=labels,
        annotations=_string_map(f.get("annotations"), f"{where}.annotations"),
        starts_at=_string(f.get("startsat"), f"{where}.startsAt"),
        ends_at=ends_at,
        generator_url=_string(f.get("generatorurl"), f"{where}.generatorURL"),
        fingerprint=_string(f.get("fingerprint"), f"{where}.fingerprint") or fingerprint(labels),
    )


def _webhook_group(f: dict[str, Any]) -> Group:
    truncated = f.get("truncatedalerts") or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool):
        raise InvalidWebhook("truncatedAlerts: must be an integer")
    version = f.get("version")
    return Group(
        version=str(version) if isinstance(version, (str, int)) and not isinstance(version, bool) else "",
        status=_string(f.get("status"), "status"),
        receiver=_string(f.get("receiver"), "receiver"),
        group_key=_string(f.get("groupkey"), "groupKey"),
        group_labels=_string_map(f.get("grouplabels"), "groupLabels"),
        common_labels=_string_map(f.get("commonlabels"), "commonLabels"),
        common_annotations=_string_map(f.get("commonannotations"), "commonAnnotations"),
        external_url=_string(f.get("externalurl"), "externalURL"),
        truncated_alerts=truncated,
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
    group = _webhook_group(f)
    received = (now or datetime.now(timezone.utc)).isoformat(timespec="microseconds")
    return [
        Envelope(
            id=uuid.uuid4().hex,
            received_at=received,
            alert=_webhook_alert(raw, f"alerts[{i}]", default_status=group.status),
            group=group,
        )
        for i, raw in enumerate(alerts)
    ]
