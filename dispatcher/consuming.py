"""The consuming loop: messages in, each handled (dispatcher.handling), its result decided on
(dispatcher.deciding), the decision carried out, then logged and counted.

A message is acknowledged only once its outcome is safe on the broker: the
Job exists, there is nothing to do, or a copy was confirmed in a delay queue
or in the dead-letter queue. Until then it stays unacknowledged, so a crash
or a lost connection hands it to another dispatcher. Publishing the copy
before acknowledging can duplicate a message, never lose one; duplicates
are harmless because Job names are deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelInvalidStateError

from dispatcher.deciding import Ack, Decision, Republish, SetAside, decide
from dispatcher.handling import Handler
from dispatcher.liveness import Progress
from dispatcher.reporting import record_message
from dispatcher.metrics import HANDLED, OTHER, REFUSED, RETRIES, STORM_HELD, STORM_SUPPRESSED
from dispatcher.results import INTERNAL_ERROR, Failure, Kind, Result
from dispatcher.retrying import RetryPolicy
from shared import headers as h
from shared.broker import BrokerLink
from shared.confirming import persistent_copy, publish_confirmed
from shared.settings import BrokerSettings
from shared.topology import OUTCOME_ROUTING_KEY, WAIT_ROUTING_KEY, Declared

log = logging.getLogger("openfero.dispatcher")

WORKER = f"{socket.gethostname()}/{os.getpid()}"
_PUBLISH_TIMEOUT_S = 10.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _can_settle(message: AbstractIncomingMessage) -> bool:
    """Whether the channel ``message`` came on is still open, so that it can be acknowledged."""
    try:
        message.channel  # noqa: B018  # raises once that channel is closed
    except ChannelInvalidStateError:
        return False
    return True


def attempts_made(headers: dict[str, Any]) -> int:
    """The attempts a message's header counts; 0 when it holds no count (any type, any text)."""
    value = headers.get(h.ATTEMPTS, 0)
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        return 0
    try:
        count = int(value)
    except ValueError:
        return 0
    # A count no dispatcher could have made is no count: the attempts start again (the broker's
    # delivery limit still bounds a message that keeps coming back).
    return count if 0 <= count <= 1_000_000 else 0


class Dispatcher:
    def __init__(
        self, broker: BrokerSettings, handler: Handler, prefetch: int, retry: RetryPolicy, stall_s: float = 120.0, log_fields: Mapping[str, Any] | None = None
    ):
        self.handler = handler
        self.log_fields = dict(log_fields or {})  # on every line about a message (a dry run says so)
        # How often to look at the work queue's depth, for dispatcher.liveness.
        self._look_every_s = max(0.5, min(15.0, stall_s / 4))
        self.retry = retry
        self.link = BrokerLink(broker, on_connected=self._consume, prefetch=prefetch, delays_s=retry.delays_s)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()
        self.progress = Progress()
        self._last_activity = time.monotonic()
        self._consumer: tuple[Any, str] | None = None
        self._accepting = True

    async def _consume(self, channel: AbstractChannel, declared: Declared) -> None:
        if self._accepting:
            tag = await declared.work_queue.consume(self._on_message)
            self._consumer = (declared.work_queue, tag)
            self.progress.consuming(time.monotonic())

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        self._last_activity = time.monotonic()
        delivery = message.delivery_tag or id(message)  # unique on the channel the consumer runs on
        self.progress.delivered(delivery, self._last_activity)
        try:
            await self._process(message)
        finally:
            self.in_flight.discard(task)
            self._last_activity = time.monotonic()
            if message.processed:  # acknowledged, or handed back
                self.progress.settled(delivery, self._last_activity)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        # Headers are whatever a publisher put there: read, never trusted.
        headers = message.headers if isinstance(message.headers, dict) else {}
        run_id = headers.get(h.RUN_ID, "")
        attempt = attempts_made(headers) + 1
        fields: dict[str, Any] = {**self.log_fields, "message_id": message.message_id, "attempt": attempt, "redelivered": message.redelivered}
        started = time.perf_counter()
        try:
            admitted = bool(headers.get(h.ADMITTED))
            result = await self.handler.handle(message.body, fields, run_id if isinstance(run_id, str) else "", admitted=admitted)
        except Exception as exc:  # a bug, not an input: retry it like a passing failure
            log.exception("handler failed", extra={**fields, "event": "message.crashed"})
            result = Result(Kind.FAILED, failure=Failure(f"handler crashed: {exc!r}", INTERNAL_ERROR, transient=True))
        decision = decide(result, attempt, self.retry, headers, _now(), WORKER, message.message_id or "")
        try:
            record = decision.record if isinstance(decision, (Ack, SetAside)) else None
            extra = [(record_message(record), OUTCOME_ROUTING_KEY)] if record is not None else []
            if isinstance(decision, (Republish, SetAside)):
                await self._republish(message, decision.routing_key, decision.headers, extra)
            elif extra:  # a suppressed alert's record, confirmed before the ack
                await publish_confirmed(self.link, extra, _PUBLISH_TIMEOUT_S, wanted=lambda: _can_settle(message))
            await message.ack()
        except Exception as exc:
            # Nothing was acknowledged: the broker hands the message out again.
            log.warning("could not settle message: %s", exc, extra={**fields, "event": "message.unsettled"})
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        self._report(result, decision, {**fields, "duration_ms": round((time.perf_counter() - started) * 1000, 2)})

    def _report(self, result: Result, decision: Decision, fields: dict[str, Any]) -> None:
        """One log line and the counts, for what was done with a message."""
        alert = result.alert
        if alert is not None:
            fields.update(fingerprint=alert.fingerprint, alertname=alert.alertname, status=alert.status)
        if result.job:
            fields["job"] = result.job
        if result.operarius is not None:
            fields["operarius"] = "/".join(result.operarius)
        if result.silence:
            fields["silence"] = result.silence
        label = result.alertname_label or OTHER
        if isinstance(decision, SetAside):
            hold = decision.hold
            kind = "waiting" if decision.routing_key == WAIT_ROUTING_KEY else "parked"
            self.outcomes[kind] += 1
            HANDLED.labels(kind, label).inc()
            STORM_HELD.labels(kind, hold.why).inc()
            held = {**fields, "event": f"alert.{kind}", "definition": hold.definition, "target": hold.target, "why": hold.why}
            text = "alert waits for a slot" if kind == "waiting" else "alert parked: the definition's breaker is open"
            log.info(text, extra=held)
            return
        if isinstance(decision, Ack):
            kind = {Kind.CREATED: "created", Kind.DUPLICATE: "duplicate", Kind.SUPPRESSED: "suppressed"}.get(result.kind, "no_definition")
            self.outcomes[kind] += 1
            HANDLED.labels(kind, label).inc()
            if result.kind is Kind.REFUSED:
                REFUSED.labels(result.refusal).inc()
                log.warning("%s", result.reason, extra={**fields, "event": "alert.refused", "reason": result.refusal})
            elif result.kind is Kind.SUPPRESSED:
                STORM_SUPPRESSED.inc()
                log.info(result.reason, extra={**fields, "event": "alert.suppressed", "covering_job": result.covering_job, "definition": result.definition})
            elif result.done:
                text = "job created" if result.kind is Kind.CREATED else "job exists already: duplicate suppressed"
                log.info(text, extra={**fields, "event": f"job.{kind}"})
            else:
                log.info(result.reason, extra={**fields, "event": "alert.no_definition"})
            return
        failure = decision.failure
        failed = {**fields, "error_class": failure.error_class, "http_status": failure.status}
        if decision.dead:
            self.outcomes["dead_lettered"] += 1
            HANDLED.labels("dead_lettered", label).inc()
            log.error("dead-lettered: %s", failure.reason, extra={**failed, "event": "message.dead", "dead_reason": decision.dead_reason})
        else:
            self.outcomes["retried"] += 1
            HANDLED.labels("retried", label).inc()
            RETRIES.labels(f"{decision.delay_s:g}").inc()
            log.warning("will retry in %g s: %s", decision.delay_s, failure.reason, extra={**failed, "event": "message.retry", "delay_s": decision.delay_s})

    async def _republish(self, message: AbstractIncomingMessage, routing_key: str, headers: dict[str, Any], extra: list[Any] | None = None) -> None:
        """Publish a copy to a delay queue, the dead-letter queue, the wait or the parked queue (and the
        ``extra`` messages beside it); return once all are confirmed.

        Nacks, returns and lost channels are tried again on a fresh channel
        (``shared.confirming``) until _PUBLISH_TIMEOUT_S, so a leader election
        does not turn a retry into a redelivery. Raises NotConfirmed after that,
        or once the channel the message came on is gone (the broker hands the
        message out again then, so a copy would only duplicate it): the
        message then stays unacknowledged and comes back.
        """
        copy = persistent_copy(message, headers)
        await publish_confirmed(self.link, [(copy, routing_key), *(extra or [])], _PUBLISH_TIMEOUT_S, wanted=lambda: _can_settle(message))

    async def run(self, stop: asyncio.Event, idle_exit_s: float | None = None, grace_s: float = 20.0) -> None:
        """Consume until ``stop`` is set, or, with ``idle_exit_s``, until the queue stays empty that long."""
        link_task = asyncio.create_task(self.link.run(), name="broker-link")
        looked = time.monotonic()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.05)
                if not self.link.ready.is_set():
                    self.progress.stopped()  # what it held went back with the connection
                elif time.monotonic() - looked >= self._look_every_s:
                    looked = time.monotonic()
                    self.progress.waiting = await self._waiting()
                if idle_exit_s is not None and await self._idle_for(idle_exit_s):
                    break
        finally:
            await self.shutdown(link_task, grace_s)

    async def _waiting(self) -> int:
        """Messages ready in the work queue; 0 when it cannot be seen (so nothing counts as stuck)."""
        declared, channel = self.link.declared, self.link.channel
        if declared is None or channel is None:
            return 0
        try:
            queue = await asyncio.wait_for(channel.declare_queue(declared.work_queue.name, passive=True), 5)
        except Exception:  # the link notices a lost connection and reconnects
            return 0
        return queue.declaration_result.message_count or 0

    async def _idle_for(self, seconds: float) -> bool:
        if self.in_flight or time.monotonic() - self._last_activity < seconds:
            return False
        declared, channel = self.link.declared, self.link.channel
        if declared is None or channel is None or not self.link.ready.is_set():
            return False
        queue = await channel.declare_queue(declared.work_queue.name, passive=True)
        return queue.declaration_result.message_count == 0

    async def shutdown(self, link_task: asyncio.Task[None], grace_s: float) -> None:
        """Stop taking messages, let those in hand finish for ``grace_s``, then leave the broker.

        Whatever is still unacknowledged when the connection closes goes back
        to the queue for another dispatcher.
        """
        self._accepting = False
        if self._consumer is not None and self.link.ready.is_set():
            queue, tag = self._consumer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), 5)
        if self.in_flight:
            log.info("finishing in-flight messages", extra={"event": "dispatcher.draining", "in_flight": len(self.in_flight)})
            await asyncio.wait(set(self.in_flight), timeout=grace_s)
        await self.link.close()
        link_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link_task
        log.info("dispatcher stopped", extra={"event": "dispatcher.stopped", "outcomes": dict(self.outcomes)})
