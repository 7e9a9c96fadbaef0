"""Dispatchers seen, as the console reads them from RabbitMQ's management API (the three-node cluster of the tests' own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import aio_pika
import pytest

from console.probing import Prober
from openfero.doctor import ManagementApi
from shared.settings import RetrySettings
from shared.topology import Names, delete
from tests.broker_cluster import BrokerCluster
from tests.conftest import async_wait_for
from tests.harness import Process, broker_call

pytestmark = pytest.mark.e2e


@pytest.fixture
def prefix_on_cluster(broker_cluster: BrokerCluster) -> Iterator[str]:
    name = f"oftest-{uuid.uuid4().hex[:10]}"
    yield name
    broker_call(broker_cluster.url, lambda channel: delete(channel, Names(name), RetrySettings().delays_s))


async def test_the_dispatchers_seen_are_the_work_queues_consumers_by_the_name_openfero_gives_them(
    broker_cluster: BrokerCluster, prefix_on_cluster: str, tmp_path
) -> None:
    env = {"OPENFERO_AMQP_URL": broker_cluster.url, "OPENFERO_QUEUE_PREFIX": prefix_on_cluster, "OPENFERO_METRICS_ADDR": "127.0.0.1:0", "OPENFERO_DRY_RUN": "1", "OPENFERO_DEFINITIONS_PATH": str(tmp_path)}
    dispatchers = [Process("dispatcher", env, tmp_path / f"dispatcher-{i}.log") for i in range(2)]
    node = broker_cluster.nodes[0]
    names = Names(prefix_on_cluster)
    connection = await aio_pika.connect(broker_cluster.url)
    try:
        # When two dispatchers consume the work queue
        async def seen() -> list[str]:
            prober = Prober(names, (), f"{prefix_on_cluster}.outcomes", ManagementApi(node.management_url, "guest", "guest"), broker_cluster.url)
            state = await prober.state(connection)
            return [c.connection for c in state.dispatchers or []]

        expected = {f"/{d.proc.pid}" for d in dispatchers}
        # Then the console names both, as openfero names their connections (the API's statistics lag a few seconds)
        found = await async_wait_for(
            lambda: _named(seen(), expected), timeout_s=60, what="both dispatchers among the work queue's consumers"
        )
        assert all(name.startswith("openfero ") for name in found)
        # and one gone is gone
        dispatchers[1].stop()
        await async_wait_for(lambda: _named(seen(), {f"/{dispatchers[0].proc.pid}"}, exact=True), timeout_s=60, what="one dispatcher left")
    finally:
        await connection.close()
        for d in dispatchers:
            d.stop()


async def _named(names_soon, wanted: set[str], exact: bool = False):  # type: ignore[no-untyped-def]
    names = await names_soon
    ends = {"/" + n.rpartition("/")[2] for n in names}
    if exact:
        return names if ends == wanted else None
    return names if wanted <= ends else None
