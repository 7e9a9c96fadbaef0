"""Whatever a message holds, the consumer settles it: a property test against the real broker.

Generated messages (headers of any type where numbers and text are
expected, any body, no message id) are published into the work queue of a
prefix of their own, and a dispatcher runs in-process until the queues are
quiet. Every message must end acknowledged: handled (a Job or nothing to
do), or copied by the dispatcher itself into the dead-letter queue. None
may stay unacknowledged, and none may reach the dead-letter queue by the
broker's delivery limit, which would mean the dispatcher never settled it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.catalog import Catalog
from dispatcher.consuming import Dispatcher, attempts_made
from dispatcher.handling import Handler
from dispatcher.rendering import JobRules
from dispatcher.retrying import RetryPolicy
from shared import headers as h
from shared.envelope import envelopes_from_webhook
from shared.settings import BrokerSettings
from shared.topology import RETRY_ROUTING_KEY, Names, declare
from tests.conftest import reference_alert_bytes, reference_configmap
from tests.helpers import RawText, publish_without_id

pytestmark = pytest.mark.usefixtures("raw_text_headers")  # headers of any bytes, as some clients send them

DELAYS = (0.2, 0.5)


class Sink:
    """Jobs created, as the API would: a name seen before is a duplicate."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    async def create(self, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        if name in self.names:
            return False
        self.names.add(name)
        return True


SCALARS = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.none()
    | st.floats(width=32, allow_nan=False, allow_infinity=False)  # AMQP's float
    | st.binary(max_size=20).map(bytearray)
    | st.binary(max_size=20).map(RawText)
    | st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
    | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda d: d.replace(microsecond=0))
    | st.sampled_from(["x", "3", "-1", "99999999999999999999999", "", " 2 "])
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3), max_leaves=6)
HEADER_NAMES = st.sampled_from(
    [h.ATTEMPTS, h.RUN_ID, h.FIRST_FAILURE, h.ERROR, h.ERROR_CLASS, h.HTTP_STATUS, h.DEAD_REASON, h.ALERTNAME, h.STATUS, "x-death", "x-custom", "other"]
)
HEADERS = st.none() | st.dictionaries(HEADER_NAMES, VALUES, max_size=5)


def _envelope_body(alertname: str) -> bytes:
    payload = json.loads(reference_alert_bytes())
    payload["alerts"][0]["labels"]["alertname"] = alertname
    return envelopes_from_webhook(payload)[0].to_json()


BODIES = (
    st.binary(max_size=200)
    | st.sampled_from([b"", b"{}", b"[]", b"null", b'{"schema": 2}', b'{"schema": 1, "alert": 5}', b"\xff" * 10])
    | st.sampled_from(["KubeQuotaAlmostFull", "Unknown", "kubequotaalmostfull", "x" * 300]).map(_envelope_body)
    | st.dictionaries(st.sampled_from(["schema", "id", "receivedAt", "alert", "group"]), VALUES, max_size=5).map(lambda d: json.dumps(d, default=str).encode())
)
MESSAGES = st.fixed_dictionaries(
    {"body": BODIES, "headers": HEADERS, "message_id": st.none() | st.text(max_size=40), "content_type": st.none() | st.text(max_size=20)}
)


async def _depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def _run(amqp_url: str, prefix: str, messages: list[dict[str, Any]]) -> None:
    """Publish ``messages``, run a dispatcher until the queues are quiet, check that each was settled."""
    names = Names(prefix)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await declare(connection, channel, names, DELAYS)
    catalog = Catalog()
    catalog.replace_configmaps([reference_configmap()])
    catalog.replace_operarii([])
    dispatcher = Dispatcher(
        BrokerSettings(amqp_url=amqp_url, queue_prefix=prefix, reconnect_max_s=0.5),
        Handler(catalog, Sink(), JobRules(60)),
        prefetch=8,
        retry=RetryPolicy(DELAYS, max_attempts=3, operator_min_delay_s=0.0),
    )
    for queue in (names.work_queue, names.dead_queue, *(names.delay_queue(d) for d in DELAYS)):
        await (await channel.declare_queue(queue, passive=True)).purge()  # an example that failed may have left some
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop, grace_s=5))
    try:
        exchange = await channel.get_exchange(names.exchange)
        for m in messages:
            if m["message_id"] is None:
                await asyncio.to_thread(publish_without_id, amqp_url, names.exchange, RETRY_ROUTING_KEY, m["body"], m["headers"], m["content_type"])
                continue
            await exchange.publish(
                aio_pika.Message(m["body"], headers=m["headers"], message_id=m["message_id"], content_type=m["content_type"]),
                # To the work queue only: RabbitMQ 3.10's stream (the archive, bound
                # to "alert") closes the publisher's connection for a decimal header.
                routing_key=RETRY_ROUTING_KEY,
            )
        # When the dispatcher has taken everything and the queues are quiet
        queues = [names.work_queue, *(names.delay_queue(d) for d in DELAYS)]
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            depths = [await _depth(channel, q) for q in queues]
            finals = sum(dispatcher.outcomes[k] for k in ("created", "duplicate", "no_definition", "dead_lettered"))
            if not any(depths) and not dispatcher.progress.held and finals >= len(messages):
                break
            assert asyncio.get_running_loop().time() < deadline, f"not settled: queues {depths}, outcomes {dict(dispatcher.outcomes)}"
            await asyncio.sleep(0.1)
        # Then each message reached exactly one end, the dead ones by the dispatcher's own hand
        assert finals == len(messages), dict(dispatcher.outcomes)
        dead_queue = await channel.declare_queue(names.dead_queue, passive=True)
        letters = []
        while (letter := await dead_queue.get(no_ack=True, fail=False)) is not None:
            letters.append(letter)
        assert len(letters) == dispatcher.outcomes["dead_lettered"]
        for letter in letters:
            assert letter.headers[h.ERROR_CLASS] in ("InvalidEnvelope", "InternalError", "RenderError", "InvalidDefinition")
            assert letter.headers[h.DEAD_REASON] in ("permanent", "retries-exhausted")  # not the broker's delivery limit
    finally:
        stop.set()
        await running
        await connection.close()


@given(messages=st.lists(MESSAGES, min_size=1, max_size=12))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_message_is_settled_whatever_it_holds(amqp_url: str, prefix: str, messages: list[dict[str, Any]]) -> None:
    # One topology for all examples (each leaves it quiet): the broker is shared.
    asyncio.run(_run(amqp_url, prefix, messages))


@pytest.mark.parametrize(
    ("value", "count"),
    [(3, 3), ("3", 3), (b"3", 3), ("x", 0), ({"a": 1}, 0), ([1], 0), (None, 0), (True, 0), (-5, 0), (2.5, 0), (Decimal("2"), 0), ("9" * 5000, 0)],
)
def test_the_attempts_header_is_read_whatever_it_holds(value: object, count: int) -> None:
    assert attempts_made({h.ATTEMPTS: value}) == count


async def test_a_message_with_a_malformed_attempts_header_is_handled_not_wedged(amqp_url: str, prefix: str) -> None:
    # The wedge found on 0.1: openfero-attempts "x" or a table, OPENFERO_PREFETCH times over.
    body = _envelope_body("KubeQuotaAlmostFull")
    messages = [{"body": body, "headers": {h.ATTEMPTS: value}, "message_id": None, "content_type": None} for value in ("x", {"n": 1}, [1, 2], "", 1.5)] * 4
    await _run(amqp_url, prefix, messages)
