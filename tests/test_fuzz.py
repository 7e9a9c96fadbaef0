"""Fuzzing the real ingest process: schemathesis from its OpenAPI document, hypothesis with arbitrary bodies.

Every request must get a 2xx, or a 4xx with a JSON error, never a 5xx, and
the service must stay healthy. The broker is up, so a 503 would be a bug too.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.openapi import OPENAPI
from tests.conftest import free_port, wait_for
from tests.harness import Process, get_status, post

pytestmark = pytest.mark.e2e

REQUESTS = {"count": 0}
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def ingest_url(amqp_url: str, tmp_path_factory: pytest.TempPathFactory):
    import asyncio

    import aio_pika

    from shared.topology import Names, delete

    prefix = f"oftest-fuzz-{os.getpid()}"
    port = free_port()
    env = {
        "OPENFERO_AMQP_URL": amqp_url,
        "OPENFERO_QUEUE_PREFIX": prefix,
        "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}",
        "OPENFERO_LOG_LEVEL": "WARNING",
        "OPENFERO_MAX_BODY_BYTES": str(256 * 1024),
    }
    process = Process("ingest", env, Path(tmp_path_factory.mktemp("fuzz")) / "ingest.log")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_status(url + "/readiness") == 200, what="ingest ready")
    yield url
    process.stop()

    async def cleanup() -> None:
        connection = await aio_pika.connect(amqp_url)
        await delete(await connection.channel(), Names(prefix))
        await connection.close()

    asyncio.run(cleanup())


def assert_well_answered(status: int, content_type: str, body: bytes, what: str) -> None:
    REQUESTS["count"] += 1
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), what
        payload = json.loads(body)
        assert payload["status"] == status and payload["error"], what


@schema.parametrize()
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_cases_never_get_a_5xx(case, ingest_url: str) -> None:
    response = case.call(base_url=ingest_url)
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
    if isinstance(content_type, list):  # schemathesis keeps every value of a header
        content_type = content_type[0] if content_type else ""
    assert_well_answered(response.status_code, content_type, response.content, f"{case.method} {case.path}")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
ALERTISH = st.fixed_dictionaries(
    {"alerts": st.lists(st.fixed_dictionaries({"labels": st.dictionaries(st.text(max_size=20), st.text(max_size=40) | JSON, max_size=5)}, optional={"status": st.text(max_size=10) | JSON, "EndsAt": st.text(max_size=30), "annotations": JSON}), max_size=5)},
    optional={"status": st.text(max_size=10), "truncatedAlerts": JSON, "groupLabels": JSON},
)


@given(body=st.binary(max_size=512) | JSON.map(lambda v: json.dumps(v).encode()) | ALERTISH.map(lambda v: json.dumps(v).encode()))
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_bodies_never_get_a_5xx(ingest_url: str, body: bytes) -> None:
    request = urllib.request.Request(ingest_url + "/alerts", data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert_well_answered(response.status, response.headers.get("Content-Type", ""), response.read(), repr(body[:80]))
    except urllib.error.HTTPError as exc:
        assert_well_answered(exc.code, exc.headers.get("Content-Type", ""), exc.read(), repr(body[:80]))


def test_after_the_fuzzing_the_service_is_healthy_and_counted_over_1000_requests(ingest_url: str) -> None:
    assert REQUESTS["count"] >= 1000, REQUESTS
    assert get_status(ingest_url + "/healthz") == 200
    assert get_status(ingest_url + "/readiness") == 200
    assert post(ingest_url + "/alerts", b'{"alerts": [{"labels": {"alertname": "after"}}]}')[0] == 200
