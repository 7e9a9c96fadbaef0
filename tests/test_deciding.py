"""What becomes of a handled message: acknowledged, retried on a delay tier, or dead-lettered. No I/O."""

from __future__ import annotations

import pytest

from dispatcher.deciding import PERMANENT, RETRIES_EXHAUSTED, Ack, Republish, decide
from dispatcher.results import (
    API_NEEDS_OPERATOR,
    API_REJECTED,
    API_UNAVAILABLE,
    INTERNAL_ERROR,
    INVALID_ENVELOPE,
    RENDER_ERROR,
    Failure,
    Kind,
    Result,
)
from dispatcher.retrying import RetryPolicy
from shared import headers as h

POLICY = RetryPolicy((1.0, 5.0, 30.0), max_attempts=4, operator_min_delay_s=30.0)
NOW = "2026-01-01T00:00:00.000+00:00"
WORKER = "host/1"

UNAVAILABLE = Failure.from_api(503, "Kubernetes API answered 503")
UNREACHABLE = Failure.from_api(None, "Kubernetes API unreachable: refused")
THROTTLED = Failure.from_api(429, "Kubernetes API answered 429", retry_after_s=3)
FORBIDDEN = Failure.from_api(403, "Kubernetes API answered 403: forbidden")
REJECTED = Failure.from_api(422, "Kubernetes API answered 422: invalid")
TEMPLATE = Failure("definition default/Broken: template fails", RENDER_ERROR)
UNREADABLE = Failure("undecodable message: not JSON", INVALID_ENVELOPE)
CRASHED = Failure("handler crashed: KeyError()", INTERNAL_ERROR, transient=True)


def failed(failure: Failure) -> Result:
    return Result(Kind.FAILED, failure=failure)


def decided(result: Result, attempts: int = 1, previous: dict | None = None) -> Ack | Republish:
    return decide(result, attempts, POLICY, previous or {}, NOW, WORKER)


@pytest.mark.parametrize("kind", [Kind.CREATED, Kind.DUPLICATE, Kind.NO_DEFINITION, Kind.REFUSED])
@pytest.mark.parametrize("attempts", [1, 4, 9])
def test_every_outcome_without_a_failure_is_acknowledged(kind: Kind, attempts: int) -> None:
    assert decided(Result(kind), attempts) == Ack()


@pytest.mark.parametrize(
    ("kind", "failure"),
    [(Kind.FAILED, None), (Kind.CREATED, UNAVAILABLE), (Kind.DUPLICATE, REJECTED), (Kind.NO_DEFINITION, TEMPLATE), (Kind.REFUSED, UNREADABLE)],
)
def test_a_result_is_failed_exactly_when_it_has_a_failure(kind: Kind, failure: Failure | None) -> None:
    with pytest.raises(ValueError):
        Result(kind, failure=failure)


@pytest.mark.parametrize(
    ("failure", "attempts", "delay_s"),
    [
        # the n-th retry waits the n-th tier
        (UNAVAILABLE, 1, 1.0),
        (UNAVAILABLE, 2, 5.0),
        (UNAVAILABLE, 3, 30.0),
        (UNREACHABLE, 1, 1.0),
        (CRASHED, 2, 5.0),
        # Retry-After: the first tier at least that long
        (THROTTLED, 1, 5.0),
        (THROTTLED, 3, 30.0),
        # what only an operator can fix starts on the slow tiers
        (FORBIDDEN, 1, 30.0),
        (FORBIDDEN, 3, 30.0),
    ],
)
def test_a_failure_that_may_pass_is_retried_on_its_tier(failure: Failure, attempts: int, delay_s: float) -> None:
    decision = decided(failed(failure), attempts)
    assert isinstance(decision, Republish) and not decision.dead
    assert (decision.routing_key, decision.delay_s, decision.dead_reason) == (f"delay.{delay_s:g}s", delay_s, "")
    assert decision.failure == failure
    assert decision.headers[h.ATTEMPTS] == attempts
    assert h.DEAD_REASON not in decision.headers


@pytest.mark.parametrize("failure", [UNAVAILABLE, UNREACHABLE, THROTTLED, FORBIDDEN, CRASHED])
@pytest.mark.parametrize("attempts", [4, 5, 1000])
def test_a_failure_that_may_pass_is_dead_lettered_once_the_attempts_are_used_up(failure: Failure, attempts: int) -> None:
    decision = decided(failed(failure), attempts)
    assert isinstance(decision, Republish) and decision.dead
    assert (decision.routing_key, decision.dead_reason) == ("dead", RETRIES_EXHAUSTED)
    assert decision.headers[h.DEAD_REASON] == RETRIES_EXHAUSTED
    assert decision.headers[h.ERROR] == f"gave up after {attempts} attempts: {failure.reason}"
    assert decision.headers[h.ERROR_CLASS] == failure.error_class
    assert decision.headers.get(h.HTTP_STATUS) == failure.status
    assert decision.headers[h.ATTEMPTS] == attempts


@pytest.mark.parametrize(
    ("failure", "error_class", "status"),
    [(REJECTED, API_REJECTED, 422), (TEMPLATE, RENDER_ERROR, None), (UNREADABLE, INVALID_ENVELOPE, None)],
)
@pytest.mark.parametrize("attempts", [1, 3, 4])
def test_a_permanent_failure_is_dead_lettered_at_once(failure: Failure, error_class: str, status: int | None, attempts: int) -> None:
    decision = decided(failed(failure), attempts)
    assert isinstance(decision, Republish) and decision.dead
    assert (decision.routing_key, decision.dead_reason, decision.failure) == ("dead", PERMANENT, failure)
    headers = decision.headers
    assert (headers[h.DEAD_REASON], headers[h.ERROR_CLASS], headers.get(h.HTTP_STATUS)) == (PERMANENT, error_class, status)
    assert headers[h.ERROR] == failure.reason
    assert (headers[h.ATTEMPTS], headers[h.WORKER], headers[h.LAST_FAILURE]) == (attempts, WORKER, NOW)


def test_the_copy_keeps_the_message_headers_and_its_first_failure() -> None:
    # Given a message retried before, with the broker's own headers and a status from an earlier failure
    previous = {
        h.ALERTNAME: "Broken",
        h.FINGERPRINT: "0123456789abcdef",
        h.FIRST_FAILURE: "2025-12-31T23:00:00.000+00:00",
        h.LAST_FAILURE: "2025-12-31T23:30:00.000+00:00",
        h.HTTP_STATUS: 503,
        h.ATTEMPTS: 2,
        "x-death": [{"count": 1}],
        "x-delivery-count": 1,
        "note": b"\xff not UTF-8",
    }
    # When its third attempt fails without an answer from the API
    decision = decided(failed(UNREACHABLE), 3, previous)
    # Then the copy keeps what the message carried, drops the broker's headers, and says what happened now
    assert isinstance(decision, Republish)
    assert decision.headers == {
        h.ALERTNAME: "Broken",
        h.FINGERPRINT: "0123456789abcdef",
        h.FIRST_FAILURE: "2025-12-31T23:00:00.000+00:00",
        h.LAST_FAILURE: NOW,
        h.ATTEMPTS: 3,
        h.ERROR: UNREACHABLE.reason,
        h.ERROR_CLASS: API_UNAVAILABLE,
        h.WORKER: WORKER,
        "note": bytearray(b"\xff not UTF-8"),  # writable again
    }


def test_the_first_failure_is_now_when_the_message_has_none_that_can_be_read() -> None:
    for previous in ({}, {h.FIRST_FAILURE: 1234}, {h.FIRST_FAILURE: b"2025"}):
        decision = decided(failed(FORBIDDEN), 1, previous)
        assert isinstance(decision, Republish)
        assert decision.headers[h.FIRST_FAILURE] == NOW
        assert (decision.headers[h.ERROR_CLASS], decision.headers[h.HTTP_STATUS]) == (API_NEEDS_OPERATOR, 403)


def test_a_long_reason_is_cut_in_the_header_not_in_the_failure() -> None:
    failure = Failure("x" * 5000, RENDER_ERROR)
    decision = decided(failed(failure), 1)
    assert isinstance(decision, Republish)
    assert decision.headers[h.ERROR] == "x" * 1000
    assert decision.failure.reason == "x" * 5000
