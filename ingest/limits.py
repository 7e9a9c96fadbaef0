"""Limits on what one webhook may hold, and on how much ingest stores at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from shared.envelope import Envelope
from shared.settings import IngestSettings


class LimitExceeded(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


class Limits:
    def __init__(self, settings: IngestSettings):
        self.settings = settings
        self.in_flight_alerts = 0

    def check(self, envelopes: Sequence[Envelope]) -> None:
        """Raise LimitExceeded (413 or 422) for a webhook over a limit."""
        s = self.settings
        if len(envelopes) > s.max_alerts:
            raise LimitExceeded(413, "too_many_alerts", f"{len(envelopes)} alerts is over the limit of {s.max_alerts} per webhook")
        for i, e in enumerate(envelopes):
            for field, values in (("labels", e.alert.labels), ("annotations", e.alert.annotations)):
                if len(values) > s.max_labels:
                    raise LimitExceeded(422, f"too_many_{field}", f"alerts[{i}].{field}: {len(values)} is over the limit of {s.max_labels}")
                for name, value in values.items():
                    size = len(name.encode()) + len(value.encode())
                    if size > s.max_label_bytes:
                        raise LimitExceeded(
                            422, "too_large_label", f"alerts[{i}].{field}.{name[:64]}: {size} bytes is over the limit of {s.max_label_bytes}"
                        )

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
