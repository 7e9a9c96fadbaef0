"""Leader election on a Lease, against the API double (which answers stale writes with 409, as a real server does)."""

from __future__ import annotations

import asyncio
import time

from kubernetes import client

from dispatcher.leading import LeaderElector, LeaseTimes, micro_time
from tests.conftest import async_wait_for
from tests.helpers import SHORT_LEASE_TIMES
from tests.kube_double import MICRO_TIME, KubeDouble


class Candidate:
    def __init__(self, api: client.ApiClient, identity: str, times: LeaseTimes = SHORT_LEASE_TIMES):
        self.elector = LeaderElector(api, "default", "oftest-outcomes", identity, times, timeout_s=2)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.elector.run(self.stop))

    @property
    def leads(self) -> bool:
        return self.elector.leading.is_set()

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


def lease(kube: KubeDouble) -> dict:
    found = kube.get("leases", "default", "oftest-outcomes")
    assert found is not None
    return found["spec"]


async def test_of_candidates_starting_together_exactly_one_leads_and_it_keeps_the_lease(api, kube_double) -> None:
    candidates = [Candidate(api, f"d{i}") for i in range(3)]
    try:
        await async_wait_for(lambda: any(c.leads for c in candidates), what="a leader")
        # Over two lease durations the leader renews and nobody else takes over
        for _ in range(20):
            assert sum(c.leads for c in candidates) == 1
            await asyncio.sleep(0.1)
        [leader] = [c for c in candidates if c.leads]
        spec = lease(kube_double)
        assert spec["holderIdentity"] == leader.elector.identity and spec["leaseDurationSeconds"] == 1
        assert MICRO_TIME.match(spec["renewTime"]) and spec["renewTime"] > spec["acquireTime"]
        assert leader.elector.terms == 1
    finally:
        for c in candidates:
            await c.end()


async def test_a_leader_that_stops_gives_the_lease_up_and_another_takes_over_at_once(api, kube_double) -> None:
    first = Candidate(api, "first")
    await async_wait_for(lambda: first.leads, what="first leads")
    second = Candidate(api, "second")
    await asyncio.sleep(0.3)
    assert not second.leads
    # When the leader shuts down
    stopped = time.monotonic()
    await first.end()
    assert not first.leads and lease(kube_double).get("holderIdentity") in (None, "", "second")
    # Then the other leads within a few retry periods, not a lease duration
    await async_wait_for(lambda: second.leads, timeout_s=5, what="second leads")
    assert time.monotonic() - stopped < SHORT_LEASE_TIMES.duration_s
    assert lease(kube_double)["holderIdentity"] == "second" and lease(kube_double)["leaseTransitions"] == 1
    await second.end()


async def test_a_leader_that_cannot_renew_stops_before_another_may_start(api, kube_double) -> None:
    first = Candidate(api, "first")
    await async_wait_for(lambda: first.leads, what="first leads")
    second = Candidate(api, "second")
    await asyncio.sleep(0.3)
    # When the Lease can no longer be written (the API answers 500), for both of them
    cut = time.monotonic()
    fault = kube_double.add_fault("PUT", r"/leases/oftest-outcomes$", status=500)
    await async_wait_for(lambda: not first.leads, timeout_s=5, what="first stops leading")
    # Then the leader stops within its renew deadline: before the lease may expire for anyone else
    assert time.monotonic() - cut < SHORT_LEASE_TIMES.duration_s
    assert not second.leads and fault.hits > 0
    # and once writes work again exactly one of them leads, and stays the only one
    kube_double.clear_faults()
    await async_wait_for(lambda: first.leads or second.leads, timeout_s=5, what="a leader again")
    for _ in range(15):
        assert first.leads != second.leads
        await asyncio.sleep(0.1)
    assert lease(kube_double)["holderIdentity"] == ("first" if first.leads else "second")
    await first.end()
    await second.end()


async def test_a_lease_left_by_a_dead_leader_is_taken_only_after_its_duration(api, kube_double) -> None:
    # Given a Lease a killed dispatcher held (renewed just now, never released)
    kube_double.apply(
        "leases",
        "default",
        {"metadata": {"name": "oftest-outcomes"}, "spec": {"holderIdentity": "killed", "leaseDurationSeconds": 1, "renewTime": micro_time(), "acquireTime": micro_time()}},
    )
    started = time.monotonic()
    candidate = Candidate(api, "successor")
    # Then the successor waits out the lease duration it saw, measured on its own clock, and takes it
    await async_wait_for(lambda: candidate.leads, timeout_s=10, what="the successor leads")
    assert 1.0 <= time.monotonic() - started < 3.0
    assert lease(kube_double)["holderIdentity"] == "successor"
    await candidate.end()
