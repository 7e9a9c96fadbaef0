"""Whether a dispatcher is stuck, or only holding back on purpose. No I/O here.

Stuck (``/healthz`` answers 503, so Kubernetes restarts it): the dispatcher
consumes, and for ``OPENFERO_STALL_SECONDS`` it has held messages without
settling any, or has seen messages wait in the work queue without being
handed any. A restart hands its messages to another dispatcher and starts a
fresh consumer.

Holding back (``/healthz`` 200, ``/readiness`` 503 saying why): before its
definitions are loaded, while it may not read them (403), and while the
broker is away, a dispatcher consumes nothing on purpose. A restart would
not change that, so it must not be restarted in a loop; the readiness
answer and the logs say what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Progress:
    """What a dispatcher's consumer has done lately, by the clock the caller passes (monotonic seconds)."""

    consuming_since: float | None = None  # None: not consuming
    held: set[int] = field(default_factory=set)  # deliveries not settled yet
    holding_since: float = 0.0  # when it last went from holding nothing to holding something
    last_delivered: float = 0.0
    last_settled: float = 0.0
    waiting: int = 0  # ready messages in the work queue when last looked

    def consuming(self, now: float) -> None:
        """A new consumer: what an earlier channel held went back to the queue with it."""
        self.consuming_since = now
        self.held.clear()

    def stopped(self) -> None:
        self.consuming_since = None
        self.held.clear()

    def delivered(self, delivery: int, now: float) -> None:
        if not self.held:
            self.holding_since = now
        self.held.add(delivery)
        self.last_delivered = now

    def settled(self, delivery: int, now: float) -> None:
        if delivery in self.held:
            self.held.discard(delivery)
            self.last_settled = now

    def stuck(self, now: float, stall_s: float) -> str | None:
        """Why the consumer is stuck, or None."""
        if self.consuming_since is None:
            return None
        quiet = now - max(self.last_settled, self.holding_since, self.consuming_since)
        if self.held and quiet >= stall_s:
            return f"holds {len(self.held)} messages and has settled none for {quiet:.0f} s"
        idle = now - max(self.last_delivered, self.last_settled, self.consuming_since)
        if not self.held and self.waiting and idle >= stall_s:
            return f"{self.waiting} messages wait in the work queue and none was handed to it for {idle:.0f} s"
        return None
