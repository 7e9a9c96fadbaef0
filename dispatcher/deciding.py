"""What to do with a message once it is handled: acknowledge it, or put a copy in a delay queue or
the dead-letter queue first. No I/O here.

``decide`` is the whole rule: a Job that exists, nothing to do, a
refused alert and one suppressed by a cool-down are acknowledged; an
alert that must wait (a concurrency or the global limit) or be parked (an
open breaker) is put in the wait or parked queue, never dead-lettered; a failure that may pass is retried on the
delay tier the attempt count and the retry policy give, until the attempts
are used up; any other failure is dead-lettered at once. The headers of the
copy say why (see the README's table of dead-letter headers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatcher.results import Failure, Hold, Kind, Result
from dispatcher.retrying import RetryPolicy
from shared import headers as h
from shared.topology import DEAD_ROUTING_KEY, PARKED_ROUTING_KEY, WAIT_ROUTING_KEY, Names

PERMANENT = "permanent"  # no retry can help
RETRIES_EXHAUSTED = "retries-exhausted"


@dataclass(frozen=True)
class Ack:
    """Acknowledge: the outcome is safe as it is (once ``record``, if any, is confirmed on the outcome stream)."""

    record: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Republish:
    """Publish a copy (confirmed), then acknowledge the message."""

    routing_key: str
    headers: dict[str, Any] = field(compare=False)
    failure: Failure
    delay_s: float | None = None  # the delay tier of a retry; None for a dead letter
    dead_reason: str = ""  # PERMANENT or RETRIES_EXHAUSTED for a dead letter

    @property
    def dead(self) -> bool:
        return self.delay_s is None


@dataclass(frozen=True)
class SetAside:
    """Publish a copy (confirmed) to the wait or the parked queue, then acknowledge the message."""

    routing_key: str
    headers: dict[str, Any] = field(compare=False)
    hold: Hold
    record: dict[str, Any] | None = field(default=None, compare=False)  # for the outcome stream, in the same confirmed publish


Decision = Ack | Republish | SetAside


def decide(result: Result, attempts: int, policy: RetryPolicy, previous: Mapping[str, Any], now: str, worker: str, message_id: str = "") -> Decision:
    """What to do with a message whose ``attempts``-th handling came to ``result``.

    ``previous`` are the message's headers as read (whatever they hold),
    ``now`` an RFC 3339 time and ``worker`` who decides: both go into the
    headers of a copy. What storm control held back also gets a record on
    the outcome stream, which ``message_id`` names.
    """
    failure = result.failure
    if result.kind in (Kind.WAITING, Kind.PARKED) and result.hold is not None:
        key = WAIT_ROUTING_KEY if result.kind is Kind.WAITING else PARKED_ROUTING_KEY
        record = held_record(result, message_id, now, worker)
        return SetAside(key, hold_headers(previous, result.hold, result.kind is Kind.PARKED, now), result.hold, record)
    if result.kind is Kind.SUPPRESSED:
        return Ack(held_record(result, message_id, now, worker))
    if result.kind is not Kind.FAILED or failure is None:
        return Ack()
    if failure.transient:
        delay = policy.delay_after(attempts, failure.needs_operator, failure.retry_after_s)
        if delay is not None:
            return Republish(Names.delay_routing_key(delay), failure_headers(previous, failure, attempts, now, worker), failure, delay)
        failure = Failure(f"gave up after {attempts} attempts: {failure.reason}", failure.error_class, failure.status)
        why = RETRIES_EXHAUSTED
    else:
        why = PERMANENT
    headers = failure_headers(previous, failure, attempts, now, worker)
    headers[h.DEAD_REASON] = why
    return Republish(DEAD_ROUTING_KEY, headers, failure, dead_reason=why)


def failure_headers(previous: Mapping[str, Any], failure: Failure, attempts: int, now: str, worker: str) -> dict[str, Any]:
    """The headers of a copy: the message's own (the broker's ``x-`` ones dropped, each made writable), and the failure."""
    headers = {k: h.writable(v) for k, v in previous.items() if not k.startswith("x-")}
    first = previous.get(h.FIRST_FAILURE)
    headers.update(
        {
            h.ATTEMPTS: attempts,
            h.ERROR: failure.reason[:1000],
            h.ERROR_CLASS: failure.error_class,
            h.FIRST_FAILURE: first if isinstance(first, str) else now,
            h.LAST_FAILURE: now,
            h.WORKER: worker,
        }
    )
    if failure.status is not None:
        headers[h.HTTP_STATUS] = failure.status
    else:
        headers.pop(h.HTTP_STATUS, None)
    return headers


def hold_headers(previous: Mapping[str, Any], hold: Hold, parked: bool, now: str) -> dict[str, Any]:
    """The headers of a waiting or parked copy: the message's own (without the broker's ``x-`` ones and
    an earlier release), and where it stands."""
    headers = {k: h.writable(v) for k, v in previous.items() if not k.startswith("x-") and k != h.ADMITTED}
    since = previous.get(h.WAITING_SINCE)
    headers.update({h.DEFINITION: hold.definition, h.TARGET: hold.target, h.JOB: hold.job, h.RECEIVED: hold.received, h.WAITING_SINCE: since if isinstance(since, str) else now})
    if hold.limit is not None:
        headers[h.LIMIT] = hold.limit
    else:
        headers.pop(h.LIMIT, None)
    if hold.cooldown_s is not None:
        headers.update({h.COOLDOWN_TARGET: hold.cooldown_target, h.COOLDOWN_SECONDS: hold.cooldown_s})
    else:
        headers.pop(h.COOLDOWN_TARGET, None)
        headers.pop(h.COOLDOWN_SECONDS, None)
    if parked:
        headers[h.PARKED_AT] = now
    return headers


RECORD_VERSION = 1  # as dispatcher.outcomes' records


def held_record(result: Result, message_id: str, now: str, worker: str) -> dict[str, Any] | None:
    """The outcome stream's record of an alert storm control suppressed, set waiting or parked.

    It names no ``job`` (the console keys Job records by it): the Job that
    covers a suppressed alert is ``coveringJob``. None without a message id
    (nothing to join it to).
    """
    alert = result.alert
    if not message_id or alert is None:
        return None
    hold = result.hold
    reasons = {
        Kind.SUPPRESSED: f"within the cool-down of Job {result.covering_job}",
        Kind.WAITING: f"waits for a slot ({hold.why if hold else ''})",
        Kind.PARKED: "the definition's breaker is open",
    }
    return {
        "version": RECORD_VERSION,
        "uid": f"{result.kind.value}-{message_id}",
        "outcome": result.kind.value,
        "reason": reasons.get(result.kind, ""),
        "definition": result.definition,
        "coveringJob": result.covering_job,
        "wouldBeJob": hold.job if hold else "",
        "alertname": alert.alertname,
        "alertStatus": alert.status,
        "fingerprint": alert.fingerprint,
        "startsAt": alert.starts_at,
        "messageId": message_id,
        "recordedAt": now,
        "recordedBy": worker,
    }
