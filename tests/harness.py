"""Running the real services for tests: processes, a pipeline of them, HTTP and broker helpers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aio_pika
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.rendering import FINALIZER_OUTCOME
from shared.topology import Names
from tests.conftest import ROOT, free_port, wait_for
from tests.kube_double import KubeDouble

# Short Lease timings, so that a leader change takes about two seconds.
LEASE_ENV = {"OPENFERO_LEASE_DURATION_SECONDS": "2", "OPENFERO_LEASE_RENEW_DEADLINE_SECONDS": "1.5", "OPENFERO_LEASE_RETRY_SECONDS": "0.2"}


class Process:
    """A service started as users start it: ``python -m <module>``, logs to a file."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()):
        self.module = module
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of one event."""
        found = []
        for line in self.logs().splitlines():
            if f'"event": "{name}"' in line:
                found.append(json.loads(line))
        return found

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def post(url: str, body: bytes, timeout_s: float = 30) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Pipeline:
    """One ingest and any number of dispatchers, started with the same settings."""

    def __init__(self, processes: list[Process], env: dict[str, str], tmp_path: Path, dispatchers: int = 1):
        self.processes = processes
        self.env = env
        self.tmp_path = tmp_path
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.ingest = self._start("ingest", {"OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}"}, "ingest.log")
        self.dispatchers = [self.start_dispatcher() for _ in range(dispatchers)]
        wait_for(lambda: get_status(self.url + "/readiness") == 200, what="ingest ready")

    @property
    def dispatcher(self) -> Process:
        return self.dispatchers[0]

    def _start(self, module: str, extra: dict[str, str], log: str) -> Process:
        process = Process(module, {**self.env, **extra}, self.tmp_path / log)
        self.processes.append(process)
        return process

    def start_dispatcher(self, wait: bool = True) -> Process:
        process = self._start("dispatcher", {}, f"dispatcher-{len(self.processes)}.log")
        if wait:
            wait_for(lambda: process.events("broker.connected"), what="dispatcher connected")
        return process

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        return post(self.url + "/alerts", body)

    def dispatcher_events(self, name: str) -> list[dict[str, Any]]:
        return [e for d in self.dispatchers for e in d.events(name)]


def webhook(alerts: list[dict[str, Any]], status: str = "firing") -> bytes:
    return json.dumps({"version": "4", "status": status, "receiver": "openfero", "alerts": alerts}).encode()


def broker_call(amqp_url: str, work: Any) -> Any:
    """Run ``await work(channel)`` on a fresh connection, from sync code."""

    async def run() -> Any:
        connection = await aio_pika.connect(amqp_url)
        try:
            return await work(await connection.channel())
        finally:
            await connection.close()

    return asyncio.run(run())


def queue_depths(amqp_url: str, prefix: str) -> dict[str, int]:
    names = Names(prefix)

    async def depths(channel: aio_pika.abc.AbstractChannel) -> dict[str, int]:
        result = {}
        for queue in (names.work_queue, names.dead_queue):
            declared = await channel.declare_queue(queue, passive=True)
            result[queue.rpartition(".")[2]] = declared.declaration_result.message_count or 0
        return result

    return broker_call(amqp_url, depths)


def dead_letters(amqp_url: str, prefix: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message off the dead-letter queue."""

    async def drain(channel: aio_pika.abc.AbstractChannel) -> list[aio_pika.abc.AbstractIncomingMessage]:
        queue = await channel.declare_queue(Names(prefix).dead_queue, passive=True)
        messages = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            messages.append(message)
        return messages

    return broker_call(amqp_url, drain)


# -- outcomes -----------------------------------------------------------------------------


def finished_with(kube: KubeDouble, name: str) -> bool:
    job = kube.get("jobs", "default", name)
    return job is None or FINALIZER_OUTCOME not in (job["metadata"].get("finalizers") or [])


def outcome(kube: KubeDouble, name: str) -> str | None:
    job = kube.get("jobs", "default", name)
    return ((job or {}).get("metadata", {}).get("annotations") or {}).get("openfero.io/outcome")


def leader(pipeline: Pipeline) -> Process:
    """The dispatcher that leads now: the last to log that it was elected, and not since lost it."""
    def holds(p: Process) -> bool:
        events = [json.loads(line)["event"] for line in p.logs().splitlines() if '"event": "leader.' in line]
        return p.proc.poll() is None and bool(events) and events[-1] == "leader.elected"

    found = wait_for(lambda: [p for p in pipeline.dispatchers if holds(p)], what="a leader")
    assert len(found) == 1
    return found[0]


def metrics(process: Process) -> dict[str, float]:
    """The dispatcher's samples, by name and labels."""
    [listening] = process.events("metrics.listening")
    with urllib.request.urlopen(f"http://127.0.0.1:{listening['port']}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def summed(processes: list[Process], name: str) -> float:
    return sum(metrics(p).get(name, 0.0) for p in processes)


def counted_here(processes: list[Process]) -> dict[str, int]:
    """How many times each Job's outcome was counted (its mark won), over the logs of ``processes``."""
    found: dict[str, int] = {}
    for process in processes:
        for line in process.events("outcome.counted"):
            found[line["job"]] = found.get(line["job"], 0) + 1
    return found


def outcome_records(amqp_url: str, prefix: str) -> list[dict[str, Any]]:
    """Every record on the outcome stream of ``prefix``."""
    from datetime import datetime, timedelta, timezone

    from openfero.history import read_stream

    async def read() -> list[dict[str, Any]]:
        connection = await aio_pika.connect(amqp_url)
        try:
            found = await read_stream(connection, Names(prefix).outcomes, datetime.now(timezone.utc) - timedelta(hours=1))
        finally:
            await connection.close()
        return [json.loads(body) for body, _, _ in found]

    return asyncio.run(read())
