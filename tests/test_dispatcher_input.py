"""What a dispatcher does with alerts it cannot act on, and with its own start: bounded, clear, never a dead letter for nothing to do."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
import yaml
from prometheus_client import generate_latest
from click.testing import CliRunner

from dispatcher.catalog import Catalog
from dispatcher.consuming import Dispatcher
from dispatcher.handling import Handler, PrintingSink
from dispatcher.metrics import HANDLED
from dispatcher.results import Kind
from dispatcher.rendering import JobRules
from dispatcher.retrying import RetryPolicy
from openfero.cli import main as openfero_main
from shared.envelope import envelopes_from_webhook
from shared.topology import ALERT_ROUTING_KEY, Names
from tests.conftest import DEFINITIONS, ROOT, reference_alert_bytes, reference_configmap
from tests.inprocess import RecordingSink, running_dispatcher

KEY = "KubeQuotaAlmostFull"


def _envelope(alertname: str = KEY, n: int = 0):
    payload = json.loads(reference_alert_bytes())
    payload["alerts"][0]["labels"].update(alertname=alertname, n=str(n))
    return envelopes_from_webhook(payload)[0]


def _catalog_with_key(key: str) -> Catalog:
    configmap = reference_configmap()
    configmap["data"] = {key: configmap["data"][KEY]}
    catalog = Catalog()
    catalog.replace_configmaps([configmap])
    catalog.replace_operarii([])
    return catalog


async def test_a_data_key_that_differs_in_case_is_nothing_to_do_with_one_warning(caplog) -> None:
    # Given the alert's ConfigMap, whose key is the alertname in lower case
    catalog = _catalog_with_key(KEY.lower())
    handler = Handler(catalog, PrintingSink(io.StringIO()), JobRules(60))
    caplog.set_level(logging.WARNING)
    # When alerts of that name, in any case, arrive again and again
    outcomes = [await handler.handle(_envelope(name, n).to_json(), {}) for n, name in enumerate([KEY, KEY, "KUBEQUOTAALMOSTFULL", "kubeQuotaAlmostFull"] * 50)]
    # Then each is nothing to do, never a dead letter
    assert all(o.kind is Kind.NO_DEFINITION and "has no data key" in o.reason for o in outcomes)
    # and one warning says which ConfigMap and which key, once for this version of the ConfigMap
    [warning] = [r for r in caplog.records if getattr(r, "event", "") == "definition.key_missing"]
    assert warning.configmap == "openfero-kubequotaalmostfull-firing" and warning.key == KEY
    assert warning.differs_in_case_from == KEY.lower()
    assert "differs only in case" in warning.getMessage()
    # A new version of the ConfigMap is warned about again
    catalog.apply_configmap("MODIFIED", {**reference_configmap(), "data": {"Other": "kind: Job"}})
    await handler.handle(_envelope(KEY).to_json(), {})
    again = [r for r in caplog.records if getattr(r, "event", "") == "definition.key_missing"]
    assert len(again) == 2 and again[1].differs_in_case_from is None


async def test_a_missing_data_key_fills_no_dead_letter_queue(broker_settings) -> None:
    # Given a dispatcher whose ConfigMap has no key for the alertname sent
    names = Names(broker_settings.queue_prefix)
    dispatcher = Dispatcher(broker_settings, Handler(_catalog_with_key("SomethingElse"), PrintingSink(io.StringIO()), JobRules(60)), 16, RetryPolicy((0.2,), 2, 0.0))
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop, grace_s=2))
    try:
        await asyncio.wait_for(dispatcher.link.ready.wait(), 10)
        exchange = dispatcher.link.declared.exchange
        for n in range(20):
            await exchange.publish(aio_pika.Message(_envelope(KEY, n).to_json()), routing_key=ALERT_ROUTING_KEY)
        # When they are handled
        for _ in range(200):
            if dispatcher.outcomes["no_definition"] == 20:
                break
            await asyncio.sleep(0.05)
        # Then every one is acknowledged as nothing to do, and none is dead-lettered
        assert dict(dispatcher.outcomes) == {"no_definition": 20}
        dead = await dispatcher.link.channel.declare_queue(names.dead_queue, passive=True)
        assert dead.declaration_result.message_count == 0
    finally:
        stop.set()
        await running


def test_validate_reports_a_data_key_no_alert_would_look_up(tmp_path: Path) -> None:
    configmap = reference_configmap()
    configmap["data"] = {"SomethingElse": configmap["data"][KEY]}
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(configmap))
    result = CliRunner().invoke(openfero_main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "key SomethingElse: never used: alert 'SomethingElse' looks for ConfigMap openfero-somethingelse-firing" in result.output


async def test_dry_run_counts_a_job_printed_before_as_a_duplicate() -> None:
    out = io.StringIO()
    catalog = Catalog()
    catalog.replace_configmaps([reference_configmap()])
    catalog.replace_operarii([])
    handler = Handler(catalog, PrintingSink(out), JobRules(60))
    body = _envelope().to_json()
    first, second = [await handler.handle(body, {}) for _ in range(2)]
    assert first.kind is Kind.CREATED
    assert second.kind is Kind.DUPLICATE and second.job == first.job
    assert out.getvalue().count("kind: Job") == 1


def test_a_taken_metrics_address_is_a_one_line_usage_error(tmp_path: Path, amqp_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),  # no kubeconfig: a dry run from files
            "OPENFERO_AMQP_URL": amqp_url,
            "OPENFERO_QUEUE_PREFIX": f"oftest-{uuid.uuid4().hex[:8]}",
            "OPENFERO_DEFINITIONS_PATH": str(DEFINITIONS),
            "OPENFERO_METRICS_ADDR": f"127.0.0.1:{port}",
        }
        result = subprocess.run([sys.executable, "-m", "dispatcher", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Abort" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"OPENFERO_METRICS_ADDR=127.0.0.1:{port}" in error and "in use" in error


async def test_a_flood_of_unknown_alertnames_leaves_metrics_bounded(amqp_url: str, prefix: str) -> None:
    handled, created = HANDLED.labels("no_definition", "other"), HANDLED.labels("created", "KubeQuotaAlmostFull")
    created_before = created._value.get()
    async with running_dispatcher(amqp_url, prefix, [reference_configmap()], RecordingSink()) as running:
        await running.post(reference_alert_bytes())  # one alert with a definition, counted under its own name
        await running.settled(1)
        assert created._value.get() == created_before + 1
        others_before, before = handled._value.get(), len(generate_latest())
        # When 2,000 alerts of 2,000 unknown alertnames of 200 characters arrive
        names = [f"{n:04d}" + "x" * 196 for n in range(2000)]
        for start in range(0, 2000, 500):
            assert await running.post(json.dumps({"alerts": [{"labels": {"alertname": name}} for name in names[start : start + 500]]}).encode()) == 500
        await running.settled(2001, timeout_s=120)
    # Then they are counted under one name, and the metrics grew by a few bytes, not by a series per name
    assert handled._value.get() - others_before == 2000
    text = generate_latest().decode()
    assert len(text) - before < 500, f"the metrics grew from {before} to {len(text)} bytes"
    assert "xxxxxxxxxx" not in text
