"""Reading one record of the outcome stream (``<prefix>.outcomes``). No I/O here.

The dispatchers publish a JSON record there when a remediation ends. This
is the one place that knows its fields; it reads them leniently (either
spelling of a name, the AMQP message id as a fallback) and ignores what it
cannot read, so that a record of a later format never stops the timeline.
A word it does not know as a Job's end (the storm controls' "suppressed",
"waiting", "parked") is kept as it is: the timeline shows it as the alert's
outcome.
"""

from __future__ import annotations

from typing import Any

import orjson

from console.timeline import OutcomeRecord, parse_time

_NAMES = {
    "message_id": ("messageId", "message_id", "message-id"),
    "job": ("job", "jobName", "job_name"),
    "outcome": ("outcome", "result"),
    "reason": ("reason", "message"),
    "finished": ("finishedAt", "finished_at", "finished", "time"),
    "definition": ("definition",),
}


def _first(data: dict[str, Any], field: str) -> str:
    for name in _NAMES[field]:
        value = data.get(name)
        if value not in (None, ""):
            return str(value)
    return ""


def read_outcome(body: bytes, message_id: str | None = None) -> OutcomeRecord | None:
    """An outcome record, or None for a body this version cannot read."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    outcome = _first(data, "outcome").strip().lower()
    if not outcome:
        return None
    record = OutcomeRecord(
        message_id=_first(data, "message_id") or (message_id or ""),
        job=_first(data, "job"),
        outcome=outcome,
        reason=_first(data, "reason")[:1000],
        finished=parse_time(_first(data, "finished")),
        definition=_first(data, "definition"),
    )
    return record if record.message_id or record.job else None
