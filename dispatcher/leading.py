"""Leader election among the dispatchers, on a coordination.k8s.io/v1 Lease.

One dispatcher at a time follows the Jobs to their end (dispatcher.tracking).
The leader holds the Lease ``<queue prefix>-outcomes`` in the dispatchers'
namespace and renews it; the others try now and then to take it.

The rules, client-go's:
- A candidate takes the Lease when there is none (create: a 409 means
  another was faster), when its holder gave it up (``holderIdentity``
  empty), or when the record has not changed for ``leaseDurationSeconds``
  by the candidate's own clock, counted from when it last saw the record
  change: no two machines' clocks are compared.
- Every write replaces the Lease as it was read, resourceVersion included,
  so of two candidates writing at once one gets 409 and stays a follower.
- The leader renews every retry period. When it has not renewed for the
  renew deadline, which is shorter than the lease duration, it stops
  leading: so it has stopped before anyone else may start.
- On shutdown the leader gives the Lease up (holder emptied), so that
  another takes over within one retry period instead of a lease duration.

Why not the official client's ``kubernetes.leaderelection`` (client 37): its
core is sound (the update replaces the object last read, resourceVersion
included, and expiry is measured on its own clock), but it calls the API
through the client's global default configuration, without a request
timeout, so one hung renew call holds its loop past the renew deadline and
a leader can go on believing it leads after its Lease expired; its ``run()``
blocks a thread for good (no way to stop it, and so no way to give the
Lease up on shutdown: after every rolling deploy the others would wait a
whole lease duration); the work it guards runs in a thread nothing stops
when leadership is lost; durations below one second end the process
(``sys.exit``), which rules out fast tests; and it logs at INFO every retry.
This module keeps its two rules and adds what is missing, on the event
loop, with our API client's timeouts.

Leadership here guards work, not correctness: what the leader records is
marked on each Job with a resourceVersion precondition, so two leaders for
a moment (a paused process, say) still count each outcome once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kubernetes.client import ApiClient
from prometheus_client import Gauge

from dispatcher.metrics import LEADER
from dispatcher.requesting import Answer, Unreachable, call
from shared.settings import OutcomeSettings

log = logging.getLogger("openfero.dispatcher")

_WARN_EVERY_S = 60.0


def micro_time(at: datetime | None = None) -> str:
    """A metav1.MicroTime as the API server reads it: RFC 3339, UTC, six fractional digits."""
    return (at or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseTimes:
    duration_s: int  # written into the Lease, read by the others
    renew_deadline_s: float
    retry_s: float

    @classmethod
    def from_settings(cls, settings: OutcomeSettings) -> LeaseTimes:
        return cls(settings.lease_duration_s, settings.lease_renew_deadline_s, settings.lease_retry_s)


class LeaderElector:
    def __init__(self, api_client: ApiClient, namespace: str, name: str, identity: str, times: LeaseTimes, timeout_s: float, gauge: Gauge = LEADER, role: str = "leader", duty: str = "follows the Jobs"):
        self.gauge = gauge  # 1 while leading: each Lease has a gauge of its own
        self.role = role  # the first word of its log events: leader.elected, wait_leader.elected
        self.duty = duty
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.times = times
        # A call may not outlast half the renew deadline: a leader must see in time that it failed.
        self.call_timeout_s = min(timeout_s, times.renew_deadline_s / 2)
        self.leading = asyncio.Event()
        self.following = asyncio.Event()
        self.following.set()
        self.terms = 0  # times this process became leader
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._warned: dict[int, float] = {}

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Take part in the election until ``stop`` is set; then give the Lease up if held."""
        try:
            while not stop.is_set():
                won = await self._attempt()
                now = time.monotonic()
                if won:
                    self._renewed_at = now
                    if not self.leading.is_set():
                        self._start_leading()
                elif self.leading.is_set() and now - self._renewed_at >= self.times.renew_deadline_s:
                    self._stop_leading("could not renew the Lease within the renew deadline")
                pause = self.times.retry_s
                if not self.leading.is_set():
                    pause *= 1 + 0.2 * random.random()  # candidates spread out, as client-go's jitter does
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)
        finally:
            if self.leading.is_set():
                self._stop_leading("shutting down", warn=False)
                await self._release()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _start_leading(self) -> None:
        self.terms += 1
        self.following.clear()
        self.leading.set()
        self.gauge.set(1)
        log.info("leading: this dispatcher %s", self.duty, extra={"event": f"{self.role}.elected", "lease": f"{self.namespace}/{self.name}", "identity": self.identity})

    def _stop_leading(self, why: str, warn: bool = True) -> None:
        self.leading.clear()
        self.following.set()
        self.gauge.set(0)
        log.log(logging.WARNING if warn else logging.INFO, "stopped leading: %s", why, extra={"event": f"{self.role}.lost", "lease": f"{self.namespace}/{self.name}", "reason": why})

    async def _attempt(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, self._try_acquire_or_renew), self.call_timeout_s * 2 + 1)
        except (Unreachable, TimeoutError) as exc:
            log.debug("Lease not reachable: %s", exc, extra={"event": f"{self.role}.unreachable"})
            return False

    def _try_acquire_or_renew(self) -> bool:
        """One round of the rules above (blocking); True if this process holds the Lease now."""
        now = datetime.now(timezone.utc)
        got = self._call("GET", self.path)
        if got.status == 404:
            spec: dict[str, Any] = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.times.duration_s,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            }
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name}, "spec": spec}
            created = self._call("POST", self.path.rpartition("/")[0], body)
            if created.ok:
                self._observe(created.body)
            elif created.status != 409:
                self._unexpected("create", created)
            return created.ok
        if not got.ok:
            self._unexpected("read", got)
            return False
        lease = got.body
        spec = dict(lease.get("spec") or {})
        self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        duration_s = int(spec.get("leaseDurationSeconds") or self.times.duration_s)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration_s:
            return False  # held, and renewed within its duration as far as we have seen
        if holder != self.identity:
            spec["acquireTime"] = micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.times.duration_s, renewTime=micro_time(now))
        replaced = self._call("PUT", self.path, {**lease, "spec": spec})  # carries the resourceVersion read
        if replaced.ok:
            self._observe(replaced.body)
        elif replaced.status != 409:
            self._unexpected("renew" if holder == self.identity else "take", replaced)
        return replaced.ok

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed = spec
            self._observed_at = time.monotonic()

    async def _release(self) -> None:
        """Give the Lease up, if still ours, so that another dispatcher takes over at once."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._pool, self._release_blocking), self.call_timeout_s * 2 + 1)
        except (Unreachable, TimeoutError) as exc:
            log.info("could not give the Lease up: %s", exc, extra={"event": f"{self.role}.release_failed"})

    def _release_blocking(self) -> None:
        got = self._call("GET", self.path)
        spec = dict(got.body.get("spec") or {}) if got.ok else {}
        if not got.ok or spec.get("holderIdentity") != self.identity:
            return
        now = micro_time()
        spec.update(holderIdentity=None, leaseDurationSeconds=1, acquireTime=now, renewTime=now)
        released = self._call("PUT", self.path, {**got.body, "spec": spec})
        log.info(
            "gave the Lease up" if released.ok else "could not give the Lease up: %s",
            *(() if released.ok else (released,)),
            extra={"event": f"{self.role}.released" if released.ok else f"{self.role}.release_failed", "lease": f"{self.namespace}/{self.name}"},
        )

    def _call(self, method: str, path: str, body: Any = None) -> Answer:
        return call(self.api_client, method, path, self.call_timeout_s, body)

    def _unexpected(self, what: str, answer: Answer) -> None:
        # Once a minute per kind of answer: a missing right would otherwise log every retry period.
        now = time.monotonic()
        if now - self._warned.get(answer.status, float("-inf")) < _WARN_EVERY_S:
            return
        self._warned[answer.status] = now
        log.warning("could not %s the Lease: %s", what, answer, extra={"event": f"{self.role}.error", "http_status": answer.status, "lease": f"{self.namespace}/{self.name}"})
