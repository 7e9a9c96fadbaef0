"""Limits on what one webhook may hold and become, and on how much ingest stores at once. No I/O here.

``check_webhook`` runs on the decoded body before any per-alert work
(fingerprints, ids, envelopes): it only measures. ``check_messages`` then
checks the size of each message as written. The group context rules keep
one webhook from growing on the broker: each message names the group's
entries its alert shares (shared.envelope) and carries only the rest, at
most ``max_group_context_bytes`` of it, and all of a webhook's messages
together may carry no more group context than the webhook's own size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from shared.envelope import Envelope
from shared.settings import IngestSettings

# The group's fields that every message carries, as a webhook spells them lower-cased.
_GROUP_FIELDS = ("groupkey", "receiver", "externalurl", "status", "version", "truncatedalerts")
# An alert's string fields besides its labels and annotations.
_ALERT_STRINGS = ("status", "startsat", "endsat", "generatorurl", "fingerprint")
# The group maps, and which of an alert's maps each is a subset of in Alertmanager's webhooks.
_GROUP_MAPS = (("grouplabels", "groupLabels", "labels"), ("commonlabels", "commonLabels", "labels"), ("commonannotations", "commonAnnotations", "annotations"))
# JSON around an entry carried as a pair, and as a name: ["n","v"], and "n",
_PAIR_JSON, _NAME_JSON = 8, 3

# A webhook that gets 200 puts at most this many times its body on each bound
# queue (the work queue, the archive), counting each message's body and its
# properties and headers. Why: a message is at most F + 4a + g bytes, where a
# is its alert's bytes in the body (the alert itself, its label names named
# again by at most two group maps, and alertname, status and fingerprint
# copied into headers), g the group context it carries, and F at most about
# 480 bytes of id, times, keys, headers and properties. The g of all messages
# together is at most the body (check_webhook), so are the a, and an alert
# takes at least 14 bytes of body ({"labels":{}} and a comma): the whole is
# at most (480/14 + 4 + 1) times the body. Measured: 25x for 10,000 empty
# alerts (tests), 1.6x for a 10,000-alert group from Alertmanager (README).
GROWTH_BOUND = 40


class LimitExceeded(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


def size(text: str) -> int:
    """Bytes of UTF-8; without encoding when the text is ASCII (the usual case)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _folded(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


def _map(value: Any) -> dict[str, Any]:
    """A map as sent; a value that is not one is for the webhook reader to refuse, by name."""
    return value if isinstance(value, dict) else {}


class Limits:
    def __init__(self, settings: IngestSettings):
        self.settings = settings
        self.in_flight_alerts = 0

    def _check_map(self, where: str | int, kind: str, values: dict[str, Any]) -> int:
        """Count and entry sizes of labels or annotations (``kind``) of a group map, or of
        alert number ``where``; their total size. Entries not text are skipped."""
        s = self.settings
        if len(values) > s.max_labels:
            where = f"alerts[{where}].{kind}" if isinstance(where, int) else where
            raise LimitExceeded(422, f"too_many_{kind}", f"{where}: {len(values)} is over the limit of {s.max_labels}")
        total = 0
        for name, value in values.items():
            if not isinstance(value, str):
                continue
            # The hot path: ASCII text is as many bytes as characters.
            entry = len(name) + len(value) if name.isascii() and value.isascii() else size(name) + size(value)
            if entry > s.max_label_bytes:
                where = f"alerts[{where}].{kind}" if isinstance(where, int) else where
                raise LimitExceeded(422, "too_large_label", f"{where}.{name[:64]}: {entry} bytes is over the limit of {s.max_label_bytes}")
            total += entry
        return total

    def check_webhook(self, payload: Any, body_bytes: int) -> None:
        """Raise LimitExceeded (413 or 422) for a decoded webhook over a limit; measure only."""
        s = self.settings
        if not isinstance(payload, dict):
            return
        f = _folded(payload)
        alerts = f.get("alerts")
        if not isinstance(alerts, list):
            return
        if len(alerts) > s.max_alerts:
            raise LimitExceeded(413, "too_many_alerts", f"{len(alerts)} alerts is over the limit of {s.max_alerts} per webhook")
        # The group context every message carries: the values of the group's
        # fields (their keys are part of a message's fixed size).
        fixed = 0
        for key in _GROUP_FIELDS:
            value = f.get(key)
            if isinstance(value, str):
                fixed += size(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                fixed += len(str(value))
        # Each group map's text entries with their sizes, measured once for all alerts.
        maps = []
        for key, wire, own_kind in _GROUP_MAPS:
            values = _map(f.get(key))
            self._check_map(wire, own_kind, values)
            entries = [(name, value, size(name), size(value)) for name, value in values.items() if isinstance(value, str)]
            if entries:
                maps.append((entries, own_kind))
        group_status = f["status"] if isinstance(f.get("status"), str) else ""
        carried_total = 0
        for i, raw in enumerate(alerts):
            if not isinstance(raw, dict):
                continue
            a = _folded(raw)
            own = {"labels": _map(a.get("labels")), "annotations": _map(a.get("annotations"))}
            content = self._check_map(i, "labels", own["labels"]) + self._check_map(i, "annotations", own["annotations"])
            for key in _ALERT_STRINGS:
                value = a.get(key)
                if isinstance(value, str):
                    field_size = size(value)
                    if field_size > s.max_label_bytes:
                        raise LimitExceeded(422, "too_large_field", f"alerts[{i}].{key}: {field_size} bytes is over the limit of {s.max_label_bytes}")
                    content += field_size
            # What the message carries of the group: its fields, the entries the
            # alert does not share (as pairs), and the group's status twice more
            # where the alert takes it as its own (its status and a header).
            carried = fixed
            if not (isinstance(a.get("status"), str) and a["status"]):
                carried += 2 * size(group_status)
            named = 0
            for entries, own_kind in maps:
                mine = own[own_kind]
                for name, value, name_size, value_size in entries:
                    if mine.get(name) == value:
                        named += name_size + _NAME_JSON
                    else:
                        carried += name_size + value_size + _PAIR_JSON
            if carried > s.max_group_context_bytes:
                raise LimitExceeded(
                    422, "too_large_group", f"alerts[{i}]: {carried} bytes of group context is over the limit of {s.max_group_context_bytes} per alert"
                )
            if content + named + carried > s.max_message_bytes:
                raise LimitExceeded(
                    422, "too_large_alert", f"alerts[{i}]: {content + named + carried} bytes is over the limit of {s.max_message_bytes} per alert"
                )
            carried_total += carried
        if carried_total > body_bytes:
            raise LimitExceeded(
                422,
                "too_large_group",
                f"the group context copied into each of {len(alerts)} alerts makes {carried_total} bytes, "
                f"more than the webhook's own {body_bytes}",
            )

    def check_messages(self, envelopes: Sequence[Envelope]) -> None:
        """Raise LimitExceeded (422) for an alert whose message, as written, is over the limit."""
        limit = self.settings.max_message_bytes
        for i, e in enumerate(envelopes):
            written = len(e.to_json())
            if written > limit:
                raise LimitExceeded(422, "too_large_alert", f"alerts[{i}]: a message of {written} bytes is over the limit of {limit} per alert")

    @contextlib.contextmanager
    def in_flight(self, count: int) -> Iterator[None]:
        """Count ``count`` alerts as being stored; LimitExceeded at once if that would pass the bound."""
        if self.in_flight_alerts + count > self.settings.max_inflight_alerts:
            raise LimitExceeded(503, "busy", f"{self.in_flight_alerts} alerts are being stored already")
        self.in_flight_alerts += count
        try:
            yield
        finally:
            self.in_flight_alerts -= count
