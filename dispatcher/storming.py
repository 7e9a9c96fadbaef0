"""Storm control at the edges: the dispatcher's guard, and the wait leader that releases waiting alerts.

Every dispatcher asks its ``StormGuard`` about each Job it is about to
create (dispatcher.storm has the rules): it answers from the dispatcher's
``JobBook`` (the Jobs in the cluster, as a watch shows them) and the
breakers' state. Alerts that must wait go to ``<prefix>.wait``.

One dispatcher at a time, the holder of the Lease ``<prefix>-storm``, is the
wait leader (``WaitLeader``). It consumes the wait queue with a large
prefetch and keeps what it got unacknowledged: the alerts stay on the
broker, in order, and go back to the queue if the leader goes. Whenever a
Job ends, an alert arrives, or a second passes, it releases those whose
definition or target has a free slot, oldest first: each is published,
confirmed, to the work queue with the header ``openfero-admitted`` and only
then acknowledged in the wait queue. A released alert counts as active
from its release until its Job shows up in the watch (or ``transit_s``
passes), so a slot is never handed out twice. Nothing is republished while
it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from dispatcher.jobbook import JobBook
from dispatcher.metrics import STORM_RELEASED, STORM_WAITING, WAIT_LEADER
from dispatcher.rendering import RenderedJob
from dispatcher.breaking import BreakerBoard, BreakerLeader, BreakerStore
from dispatcher.storm import Breaker, Gate, Verdict, Waiting, WaitList, gate, trial_claimed
from shared import headers as h
from shared.broker import BrokerLink
from shared.confirming import persistent_copy, publish_confirmed
from shared.loop import first_done
from shared.topology import RETRY_ROUTING_KEY

log = logging.getLogger("openfero.dispatcher")

GLOBAL_WINDOW_S = 60.0
_PUBLISH_TIMEOUT_S = 10.0
_BATCH_S = 0.02


class StormGuard:
    """The dispatcher's side: ask before each Job."""

    def __init__(
        self,
        book: JobBook,
        global_per_window: int | None = None,
        board: BreakerBoard | None = None,
        store: BreakerStore | None = None,
        window_s: float = GLOBAL_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ):
        self.book = book
        self.global_per_window = global_per_window  # None: no global limit
        self.window_s = window_s
        self.board = board  # the breakers as the dispatcher last saw them
        self.store = store  # where a trial is claimed
        self.clock = clock

    def global_full(self) -> bool:
        if self.global_per_window is None:
            return False
        return self.book.created_since(self.clock() - self.window_s) >= self.global_per_window

    def verdict(self, definition: str, job: RenderedJob, admitted: bool) -> Verdict:
        """Whether to create ``job`` now; a Job that may go is claimed in the book at once."""
        rules = job.storm
        if not rules.any and self.global_per_window is None:
            return Verdict(Gate.GO)
        now = self.clock()
        last = self.book.last_job(definition, job.cooldown_target) if rules.cooldown_s is not None else None
        breaker = self.board.breaker(definition) if self.board is not None and rules.breaker_failures is not None else Breaker.CLOSED
        # A released alert took its share of the global limit when it was released.
        verdict = gate(rules, job.name, admitted, last, now, breaker, global_full=not admitted and self.global_full())
        if verdict.gate is Gate.GO:
            self.book.claim(job.name, definition, job.concurrency_target, job.cooldown_target)
        return verdict

    async def claim_trial(self, definition: str, job: str) -> bool:
        """Whether ``job`` is the breaker's one trial (resourceVersion-checked: of several dispatchers
        one wins). Raises Unreachable when the API does not answer."""
        if self.store is None:
            return True
        store = self.store
        claimed = await asyncio.to_thread(store.update, definition, lambda state: trial_claimed(state, job))
        return claimed is not None


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def waiting_of(tag: int, headers: dict[str, Any]) -> Waiting:
    """A held message as the rule sees it; a header that is missing or of the wrong type reads as none."""
    limit = headers.get(h.LIMIT)
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
    cooldown = headers.get(h.COOLDOWN_SECONDS)
    cooldown = float(cooldown) if isinstance(cooldown, (int, float)) and not isinstance(cooldown, bool) and cooldown > 0 else None
    return Waiting(
        tag,
        _text(headers.get(h.DEFINITION)),
        _text(headers.get(h.TARGET)),
        limit,
        _text(headers.get(h.JOB)),
        _text(headers.get(h.RECEIVED)),
        _text(headers.get(h.COOLDOWN_TARGET)),
        cooldown,
    )


class WaitLeader:
    """Releases waiting alerts while its elector leads."""

    def __init__(
        self,
        link: BrokerLink,
        book: JobBook,
        guard: StormGuard,
        window: int = 10_000,
        transit_s: float = 30.0,
        tick_s: float = 1.0,
        board: BreakerBoard | None = None,
    ):
        self.link = link
        self.board = board  # the breakers: an alert its breaker parks takes no slot
        self.book = book
        self.guard = guard
        self.window = window  # how many waiting alerts it holds at once (the consumer's prefetch)
        self.transit_s = transit_s
        self.tick_s = tick_s
        self.released = 0
        self._held: dict[int, AbstractIncomingMessage] = {}
        self._waiting = WaitList()
        self._transit: dict[str, tuple[str, str, float]] = {}  # job -> (definition, target, monotonic released at)
        self._transit_at: dict[str, float] = {}  # job -> wall-clock release (for the global window)
        self._kick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def kick_threadsafe(self) -> None:
        """Something changed (a Job, from the watch's thread): look again, if anything waits here."""
        loop = self._loop
        if self._held and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._kick.set)

    async def run(self, leading: asyncio.Event, following: asyncio.Event, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            await first_done(leading.wait(), stop.wait())
            if stop.is_set():
                return
            try:
                await self._lead(following, stop)
            except Exception as exc:  # the broker went: start again on the next connection
                log.warning("wait leader: %s", exc, extra={"event": "storm.wait_error"})
                await asyncio.sleep(0.5)

    async def _lead(self, following: asyncio.Event, stop: asyncio.Event) -> None:
        await self.link.ready.wait()
        connection = self.link.connection
        assert connection is not None
        channel = await connection.channel()
        WAIT_LEADER.set(1)
        log.info("releasing waiting alerts", extra={"event": "storm.wait_leader"})
        try:
            await channel.set_qos(prefetch_count=self.window)
            queue = await channel.get_queue(self.link.names.wait_queue, ensure=False)

            async def held(message: AbstractIncomingMessage) -> None:
                tag = message.delivery_tag or 0
                headers = message.headers if isinstance(message.headers, dict) else {}
                self._held[tag] = message
                self._waiting.add(waiting_of(tag, headers))
                self._kick.set()

            tag = await queue.consume(held)
            while not stop.is_set() and not following.is_set() and not channel.is_closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout=self.tick_s)
                self._kick.clear()
                await self.release()
                await asyncio.sleep(_BATCH_S)  # the events of a moment make one pass
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        finally:
            WAIT_LEADER.set(0)
            STORM_WAITING.set(0)
            self._held.clear()  # unacknowledged: they go back to the queue with the channel
            self._waiting = WaitList()
            self._transit.clear()
            self._transit_at.clear()
            with contextlib.suppress(Exception):
                await channel.close()

    def _active(self) -> dict[tuple[str, str], int]:
        counts = self.book.active()
        now = time.monotonic()
        for job, (definition, target, at) in list(self._transit.items()):
            if self.book.knows(job) or now - at > self.transit_s:
                del self._transit[job]  # the book counts it now (or it never came)
                self._transit_at.pop(job, None)
                continue
            counts[(definition, "")] = counts.get((definition, ""), 0) + 1
            if target:
                counts[(definition, target)] = counts.get((definition, target), 0) + 1
        return counts

    def _slotless(self, alert: Waiting) -> bool:
        """Whether the dispatcher will make no Job of it: its breaker parks it, or its target is in its cool-down."""
        if self.board is not None and self.board.state(alert.definition).parks:
            return True
        if alert.cooldown_s is not None:
            last = self.book.last_job(alert.definition, alert.cooldown_target)
            if last is not None and last[0] != alert.job and self.guard.clock() - last[1] < alert.cooldown_s:
                return True
        return False

    def _room_global(self) -> int | None:
        guard = self.guard
        if guard.global_per_window is None:
            return None
        since = guard.clock() - guard.window_s
        made = self.book.created_since(since) + sum(1 for job, at in self._transit_at.items() if at >= since and not self.book.knows(job))
        return max(0, guard.global_per_window - made)

    async def release(self) -> int:
        """Release what may go now; how many went."""
        STORM_WAITING.set(len(self._held))
        if not self._held or not self.book.synced.is_set():
            return 0  # nothing waits, or the Jobs that take the slots are not known yet
        tags = self._waiting.releasable(self._active(), self._room_global(), self._slotless)
        copies = []
        for tag in tags:
            message, waiting = self._held[tag], self._waiting.get(tag)
            headers = {k: h.writable(v) for k, v in (message.headers or {}).items() if not k.startswith("x-")}
            headers[h.ADMITTED] = waiting.job or "1"
            copies.append((persistent_copy(message, headers), RETRY_ROUTING_KEY))
            if self._slotless(waiting):
                continue
            # The slot is taken from now on, until the Job shows up
            self._transit[waiting.job] = (waiting.definition, waiting.target if waiting.limit is not None else "", time.monotonic())
            self._transit_at[waiting.job] = self.guard.clock()
        if not copies:
            return 0
        # All confirmed in the work queue before any is acknowledged here: a failure in between
        # leaves them in both, and the second copy finds its Job (a duplicate)
        await publish_confirmed(self.link, copies, _PUBLISH_TIMEOUT_S)
        for tag in tags:
            await self._held.pop(tag).ack()
            self._waiting.remove(tag)
            self.released += 1
            STORM_RELEASED.inc()
        STORM_WAITING.set(len(self._held))
        return len(tags)


def watch_jobs(api_client: Any, namespace: str, book: JobBook, watch_timeout_s: int) -> Any:
    """A started watch of openfero's Jobs in ``namespace`` that feeds ``book``; ``.stop()`` it."""
    import functools

    from kubernetes import client

    from dispatcher.rendering import MANAGED_BY
    from dispatcher.watching import ResourceWatcher

    batch = client.BatchV1Api(api_client)
    watcher = ResourceWatcher(
        "Job",
        functools.partial(batch.list_namespaced_job, namespace, label_selector=f"{MANAGED_BY[0]}={MANAGED_BY[1]}"),
        book.replace,
        book.apply,
        watch_timeout_s,
        log_changes=False,
    )
    watcher.start()
    return watcher


class StormControl:
    """A dispatcher's storm control, assembled: the Job book and its watch, the guard, and the wait
    leader on the Lease ``<prefix>-storm`` (in the dispatchers' namespace)."""

    def __init__(
        self,
        api_client: Any,
        job_namespace: str,
        lease_namespace: str,
        broker: Any,
        settings: Any,
        lease_times: Any,
        timeout_s: float,
        watch_timeout_s: int,
        identity: str,
        tick_s: float = 1.0,
        window_s: float = GLOBAL_WINDOW_S,
    ):
        from dispatcher.leading import LeaderElector
        from dispatcher.naming import dns_label

        self.api_client = api_client
        self.job_namespace = job_namespace
        self.watch_timeout_s = watch_timeout_s
        self.book = JobBook(on_change=self._kick)
        self.board = BreakerBoard()
        self.lease_namespace = lease_namespace
        self.breakers_name = dns_label(f"{broker.queue_prefix}-breakers")
        self.store = BreakerStore(api_client, lease_namespace, self.breakers_name, timeout_s)
        per_minute = settings.global_jobs_per_minute or None
        self.guard = StormGuard(self.book, global_per_window=per_minute, board=self.board, store=self.store, window_s=window_s)
        self.breaker_leader = BreakerLeader(self.store, self.board, self.book.knows, tick_s=tick_s)
        self.book.on_ended = self.breaker_leader.ended
        self.link = BrokerLink(broker)
        self.leader = WaitLeader(self.link, self.book, self.guard, settings.wait_window, settings.transit_s, tick_s, self.board)
        self.lease = f"{lease_namespace}/{dns_label(f'{broker.queue_prefix}-storm')}"
        self.elector = LeaderElector(api_client, lease_namespace, dns_label(f"{broker.queue_prefix}-storm"), identity, lease_times, timeout_s, gauge=WAIT_LEADER, role="wait_leader", duty="releases waiting alerts")
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.watch: Any = None
        self.poll_s = min(1.0, tick_s * 2)

    def _kick(self) -> None:
        self.leader.kick_threadsafe()

    def start(self, process_stop: asyncio.Event) -> None:
        """Watch the Jobs now (the guard answers from them), and take part in the wait leader's election."""
        self.watch = watch_jobs(self.api_client, self.job_namespace, self.book, self.watch_timeout_s)

        async def stop_with_the_process() -> None:
            await process_stop.wait()
            self.stop.set()

        self.tasks = [
            asyncio.create_task(self.link.run(), name="storm-broker-link"),
            asyncio.create_task(self.elector.run(self.stop), name="storm-leader"),
            asyncio.create_task(self.leader.run(self.elector.leading, self.elector.following, self.stop), name="storm-releaser"),
            asyncio.create_task(self.breaker_leader.run(self.elector.leading, self.elector.following, self.stop), name="storm-breakers"),
            asyncio.create_task(self.breaker_leader.poll(self.stop, self.poll_s), name="storm-breaker-reader"),
            asyncio.create_task(stop_with_the_process(), name="storm-stop"),
        ]

    async def synced(self, stop: asyncio.Event, timeout_s: float = 10.0) -> bool:
        """Wait until the Jobs are listed and the breakers read, for ``timeout_s`` at most; False once ``stop`` is set.

        Past it the dispatcher goes on (the watch keeps trying): alerts without
        a limit are not held up by the API, a cool-down may let an alert through,
        and the wait leader releases nothing until its book is listed.
        """
        deadline = time.monotonic() + timeout_s
        while not self.book.synced.is_set() or not self.board.synced.is_set():
            if stop.is_set():
                return False
            if time.monotonic() > deadline:
                log.warning(
                    "storm control has not read the Jobs or the breakers yet: consuming anyway",
                    extra={"event": "storm.unsynced", "jobs_listed": self.book.synced.is_set(), "breakers_read": self.board.synced.is_set()},
                )
                return True
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        self.stop.set()
        if self.watch is not None:
            self.watch.stop()
        if self.tasks:
            await asyncio.wait(self.tasks[1:5], timeout=15)
        await self.link.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
