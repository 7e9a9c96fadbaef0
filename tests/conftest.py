"""Shared fixtures: the real broker, the Kubernetes API double, and the real processes.

The broker: ``OPENFERO_TEST_AMQP_URL`` if set; else testcontainers' RabbitMQ
when a Docker engine answers; else the machine's broker at 127.0.0.1:5672.
An unreachable broker fails the run: these tests never skip what they prove.

Every test gets its own queue prefix, so runs share one broker safely.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml

from shared.settings import BrokerSettings, RetrySettings, positive_seconds
from shared.topology import Names, delete
from tests.cluster import ApiCluster
from tests.kube_double import KubeDouble

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "examples"
DEFINITIONS = ROOT / "k8s" / "examples"
# Retry tiers short enough for tests to watch a whole schedule.
TEST_RETRY_DELAYS = "0.2,0.5,1"


def docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("OPENFERO_TEST_AMQP_URL")
    container = None
    if not url and docker_engine_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        url = f"amqp://guest:guest@{container.get_container_host_ip()}:{container.get_exposed_port(5672)}/"
    url = url or "amqp://guest:guest@127.0.0.1:5672/"

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=10)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        pytest.fail(f"the test broker at {url} is unreachable: {exc!r}", pytrace=False)
    yield url
    if container is not None:
        container.stop()


# Start-up times of the brokers the tests start themselves, shown at the end of the run.
STARTUP_S: dict[str, float] = {}


@pytest.fixture(scope="session")
def broker_cluster() -> Iterator[Any]:
    """Three RabbitMQ nodes of the tests' own behind a round-robin balancer (tests.broker_cluster).

    One cluster for the whole run, started when a test first asks for it;
    every node and folder is removed at the end, also when tests fail.
    """
    from tests.broker_cluster import BrokerCluster

    cluster = BrokerCluster()
    try:
        STARTUP_S["three-node RabbitMQ cluster"] = cluster.start()
        yield cluster
    finally:
        cluster.remove()



def pytest_terminal_summary(terminalreporter: Any) -> None:
    for what, seconds in STARTUP_S.items():
        terminalreporter.write_line(f"{what}: started in {seconds:.1f} s")


@pytest.fixture
def prefix(amqp_url: str) -> Iterator[str]:
    """A queue prefix of this test's own; its queues are deleted afterwards."""
    name = f"oftest-{uuid.uuid4().hex[:10]}"
    yield name

    async def cleanup() -> None:
        connection = await aio_pika.connect(amqp_url)
        delays = RetrySettings().delays_s + positive_seconds(TEST_RETRY_DELAYS)
        await delete(await connection.channel(), Names(name), delays)
        await connection.close()

    asyncio.run(cleanup())


@pytest.fixture
def broker_settings(amqp_url: str, prefix: str) -> BrokerSettings:
    return BrokerSettings(amqp_url=amqp_url, queue_prefix=prefix, reconnect_max_s=0.5)


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect(amqp_url)
    yield connection
    await connection.close()


@pytest.fixture
async def channel(connection: aio_pika.abc.AbstractConnection) -> aio_pika.abc.AbstractChannel:
    return await connection.channel()


async def queue_depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


@pytest.fixture
def kube_double() -> Iterator[KubeDouble]:
    """The API double: for tests that inject faults or expire watches."""
    double = KubeDouble().start()
    yield double
    double.stop()


@pytest.fixture(scope="session")
def k3s() -> Iterator[ApiCluster | None]:
    """testcontainers' K3s where a Docker engine answers; None elsewhere."""
    if not docker_engine_answers():
        yield None
        return
    from testcontainers.k3s import K3SContainer

    with K3SContainer() as container:
        yield ApiCluster(yaml.safe_load(container.config_yaml()))


@pytest.fixture
def kube(k3s: ApiCluster | None) -> Iterator[KubeDouble | ApiCluster]:
    """The cluster end-to-end tests run against: K3s where Docker answers, else the API double."""
    if k3s is not None:
        yield k3s
        k3s.clean()
        return
    double = KubeDouble().start()
    yield double
    double.stop()


def write_kubeconfig(cluster: KubeDouble | ApiCluster, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cluster.kubeconfig()))
    return path


@pytest.fixture
def kubeconfig(kube: KubeDouble | ApiCluster, tmp_path: Path) -> Path:
    return write_kubeconfig(kube, tmp_path)


def reference_configmap() -> dict[str, Any]:
    return yaml.safe_load((DEFINITIONS / "kubequotaalmostfull.configmap.yaml").read_text())


def reference_alert_bytes() -> bytes:
    return (ALERTS / "kubequotaalmostfull.alert.json").read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def async_wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def api(kube_double: KubeDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The official client, configured for the API double as users configure it (KUBECONFIG)."""
    from dispatcher.jobs import load_api_client

    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube_double, tmp_path)))
    return load_api_client(timeout_s=2)[0]


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Any]:
    """Debian's Alertmanager on loopback, of this test's own (tests.alertmanager); its notifications go nowhere."""
    from tests.alertmanager import Alertmanager, routes

    manager = Alertmanager(tmp_path / "am", routes("http://127.0.0.1:9/alerts", "http://127.0.0.1:9/page")).start()
    yield manager
    manager.close()


@pytest.fixture
def raw_text_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers of type tests.helpers.RawText go out as text whatever their bytes, as some clients send them."""
    from tests.helpers import send_raw_text

    send_raw_text(monkeypatch)


@pytest.fixture
def processes(prefix: str) -> Iterator[list[Any]]:
    """Processes a test started (tests.harness.Process); stopped when it ends.

    It asks for ``prefix`` so that its processes stop before the prefix's queues are
    deleted: a dispatcher still running would declare them again while they go, and
    RabbitMQ 3.10 gives up on dead-lettering for every quorum queue (its
    rabbit_fifo_dlx_sup exceeds its restart intensity) when a queue's dead-letter
    worker is deleted as it starts, twice within seconds.
    """
    started: list[Any] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def double_env(service_env: dict[str, str], kube_double: KubeDouble, tmp_path: Path) -> dict[str, str]:
    """The services' environment, with Kubernetes being the API double (for tests that inject faults)."""
    return {**service_env, "KUBECONFIG": str(write_kubeconfig(kube_double, tmp_path))}


@pytest.fixture
def service_env(broker_settings: BrokerSettings, kubeconfig: Path) -> dict[str, str]:
    return {
        "OPENFERO_AMQP_URL": broker_settings.amqp_url,
        "OPENFERO_QUEUE_PREFIX": broker_settings.queue_prefix,
        "OPENFERO_RECONNECT_MAX_SECONDS": "0.5",
        "KUBECONFIG": str(kubeconfig),
        "OPENFERO_LOG_LEVEL": "DEBUG",
        "OPENFERO_RETRY_DELAYS_SECONDS": TEST_RETRY_DELAYS,
        "OPENFERO_RETRY_MAX_ATTEMPTS": "4",
        "OPENFERO_METRICS_ADDR": "127.0.0.1:0",  # any free port: tests run several dispatchers
        "PYTHONUNBUFFERED": "1",
    }
