"""Operator tools against bad records: `openfero dlq list/show/replay` show what they cannot read as it is, and go on."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from click.testing import CliRunner

from openfero.cli import main
from shared import headers as h
from shared.envelope import envelopes_from_webhook
from shared.topology import DEAD_ROUTING_KEY, Names, declare
from tests.conftest import reference_alert_bytes
from tests.harness import queue_depths
from tests.helpers import RawText, publish_without_id

pytestmark = pytest.mark.usefixtures("raw_text_headers")


GOOD = envelopes_from_webhook(json.loads(reference_alert_bytes()))[0].to_json()
BAD_RECORDS = {
    "attempts-text": (GOOD, {h.ATTEMPTS: "x", h.ERROR: "boom", h.ERROR_CLASS: "RenderError", h.LAST_FAILURE: "2026-11-25T02:00:00+00:00"}),
    "attempts-table": (GOOD, {h.ATTEMPTS: {"n": 1}, h.ERROR: "boom", h.ERROR_CLASS: "RenderError"}),
    "not-json": (b"\xff\xfe not json", {h.ATTEMPTS: 2, h.ERROR: 7, h.ERROR_CLASS: ["a"]}),
    "x-death-text": (b"{}", {"x-death": "not a list", h.LAST_FAILURE: {"t": 1}}),
    "x-death-odd": (b"[]", {"x-death": [1, {"reason": "delivery_limit", "count": "many"}]}),
    "not-utf8": (GOOD, {h.ERROR: RawText(b"\xff\xfe broken"), h.ERROR_CLASS: RawText(b"\xc3"), "other": RawText(b"\x80")}),
}


def _fill(amqp_url: str, prefix: str) -> None:
    """The topology, and the bad records in its dead-letter queue."""

    async def fill() -> None:
        connection = await aio_pika.connect(amqp_url)
        try:
            declared = await declare(connection, await connection.channel(), Names(prefix))
            for message_id, (body, headers) in BAD_RECORDS.items():
                await declared.exchange.publish(aio_pika.Message(body, headers=headers, message_id=message_id), routing_key=DEAD_ROUTING_KEY)
        finally:
            await connection.close()

    asyncio.run(fill())
    publish_without_id(amqp_url, Names(prefix).exchange, DEAD_ROUTING_KEY, b"no id", {h.ATTEMPTS: "3"})


def openfero(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_dlq_list_show_and_replay_survive_bad_records(amqp_url: str, prefix: str) -> None:
    _fill(amqp_url, prefix)
    env = {"OPENFERO_AMQP_URL": amqp_url, "OPENFERO_QUEUE_PREFIX": prefix}
    # list, as a table and as JSON: every record, bad headers shown as they are
    code, table = openfero(env, "dlq", "list")
    assert code == 0, table
    assert "7 of 7 dead letters matched" in table
    code, output = openfero(env, "dlq", "list", "--json")
    assert code == 0, output
    listed = {d["id"]: d for d in json.loads(output)["dead_letters"]}
    assert listed["attempts-text"]["attempts"] == "x"
    assert listed["attempts-table"]["attempts"] == {"n": 1}
    assert listed["not-json"]["reason"] == "['a']: 7" and listed["not-json"]["alertname"] == ""
    assert listed["x-death-odd"]["reason"] == "broker: delivery_limit" and listed["x-death-odd"]["attempts"] == "many"
    assert listed["not-utf8"]["reason"] == "\ufffd: \ufffd\ufffd broken"
    [no_id] = [d for d in listed.values() if d["id"].startswith("sha-")]
    assert no_id["attempts"] == 3
    # show: headers and body as they are
    code, output = openfero(env, "dlq", "show", "not-json", "--json")
    assert code == 0, output
    shown = json.loads(output)
    assert shown["headers"][h.ERROR_CLASS] == ["a"] and shown["body"].endswith("not json")
    code, output = openfero(env, "dlq", "show", "not-utf8")
    assert code == 0 and "broken" in output
    # replay: every one goes back to the work queue, the unreadable headers with it
    code, output = openfero(env, "dlq", "replay", "--json")
    assert code == 0, output
    assert json.loads(output)["done"] == 7
    assert queue_depths(amqp_url, prefix) == {"work": 7, "dead": 0}
