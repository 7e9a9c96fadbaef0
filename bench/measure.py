"""The measurements. Each returns plain numbers; bench.run puts them side by side.

Everything runs on this machine: the real broker, the real ingest and
dispatcher processes, and the Kubernetes API double. Every run uses queue
names of its own and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import timeit
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import yaml

from shared.envelope import envelopes_from_webhook, fingerprint
from shared.topology import ALERT_ROUTING_KEY, Names, declare, delete
from tests.kube_double import KubeDouble

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_ALERT = json.loads((ROOT / "examples" / "kubequotaalmostfull.alert.json").read_text())
JSON = {"Content-Type": "application/json"}
REFERENCE_CONFIGMAP = yaml.safe_load((ROOT / "k8s" / "examples" / "kubequotaalmostfull.configmap.yaml").read_text())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def webhook(count: int, start: int, status: str = "firing") -> dict[str, Any]:
    """The reference webhook with ``count`` alerts, each an alert of its own (label n).

    Each alert carries its fingerprint, as Alertmanager sends it.
    """
    template = REFERENCE_ALERT["alerts"][0]
    alerts = []
    for i in range(count):
        labels = {**template["labels"], "n": str(start + i)}
        alerts.append({**template, "labels": labels, "fingerprint": fingerprint(labels)})
    return {**REFERENCE_ALERT, "status": status, "alerts": alerts}


def bodies(per_webhook: int, count: int) -> list[bytes]:
    """``count`` webhook bodies, made before any clock starts."""
    return [json.dumps(webhook(per_webhook, i * per_webhook)).encode() for i in range(count)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """The highest RSS of some processes while a block runs."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.peak = {name: 0.0 for name in pids}
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_mb(pid))
                except OSError:
                    pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Service:
    """ingest or a dispatcher as users run it, quiet or logging to ``log``; ``root`` holds the code to run (another version, to compare)."""

    def __init__(self, module: str, env: dict[str, str], args: tuple[str, ...] = (), log: Path | None = None, root: Path = ROOT):
        output = open(log, "wb") if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=root,
            env={**os.environ, "OPENFERO_LOG_LEVEL": "INFO" if log is not None else "WARNING", **env},
            stdout=output,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        )
        if log is not None:
            output.close()  # the child holds it

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fresh_prefix(amqp_url: str) -> Iterator[str]:
    prefix = f"ofbench-{uuid.uuid4().hex[:8]}"

    async def setup() -> None:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        await declare(connection, channel, Names(prefix))
        await connection.close()

    asyncio.run(setup())
    try:
        yield prefix
    finally:

        async def cleanup() -> None:
            connection = await aio_pika.connect(amqp_url)
            await delete(await connection.channel(), Names(prefix), (1.0, 5.0, 30.0, 120.0, 600.0, 1200.0, 1800.0))
            await connection.close()

        asyncio.run(cleanup())


async def _wait_ready(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/readiness") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


# -- 1. ingest ---------------------------------------------------------------------------------


def publisher_ceiling(amqp_url: str, messages: int = 20000, in_flight: int = 500) -> float:
    """Messages/s of one aio-pika publisher with confirms, envelopes of the reference size."""
    envelopes = envelopes_from_webhook(webhook(in_flight, 0))
    bodies = [e.to_json() for e in envelopes]

    async def run(prefix: str) -> float:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(Names(prefix).exchange)
        started = time.perf_counter()
        for _ in range(messages // in_flight):
            await asyncio.gather(
                *(
                    exchange.publish(aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=ALERT_ROUTING_KEY)
                    for b in bodies
                )
            )
        elapsed = time.perf_counter() - started
        await connection.close()
        return messages / elapsed

    with fresh_prefix(amqp_url) as prefix:
        return asyncio.run(run(prefix))


async def _post_for(url: str, per_webhook: int, concurrency: int, duration_s: float) -> tuple[int, list[float]]:
    """Post webhooks as fast as ``concurrency`` senders can; (alerts accepted, latencies)."""
    accepted = 0
    latencies: list[float] = []
    pool = bodies(per_webhook, max(1, 2000 // per_webhook))
    deadline = time.perf_counter() + duration_s
    counter = iter(range(10**9))

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while time.perf_counter() < deadline:
            body = pool[next(counter) % len(pool)]
            started = time.perf_counter()
            async with session.post(url + "/alerts", data=body, headers=JSON) as response:
                await response.read()
                if response.status == 200:
                    accepted += per_webhook
                    latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
    return accepted, latencies


async def _post_paced(url: str, per_webhook: int, alerts_per_s: float, duration_s: float) -> list[float]:
    """Post at a steady rate; the latency of each webhook."""
    interval = per_webhook / alerts_per_s
    latencies: list[float] = []
    pool = bodies(per_webhook, max(1, 2000 // per_webhook))

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        body = pool[n % len(pool)]
        started = time.perf_counter()
        async with session.post(url + "/alerts", data=body, headers=JSON) as response:
            await response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession() as session:
        tasks = []
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < duration_s:
            tasks.append(asyncio.create_task(one(session, n)))
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
        await asyncio.gather(*tasks)
    return latencies


INGEST_SENDERS = {1: 32, 10: 16, 100: 8}


def ingest_throughput(amqp_url: str, duration_s: float, sizes: tuple[int, ...] = (1, 10, 100), event_loop: str = "uvloop") -> dict[str, Any]:
    """Alerts/s ingest accepts with 1, 10, 100 alerts per webhook; latency at half the best rate; RSS."""
    results: dict[str, Any] = {"alerts_per_s": {}, "rss_mb": {}}
    for per_webhook in sizes:
        concurrency = INGEST_SENDERS[per_webhook]
        with fresh_prefix(amqp_url) as prefix:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {"OPENFERO_AMQP_URL": amqp_url, "OPENFERO_QUEUE_PREFIX": prefix, "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}", "OPENFERO_EVENT_LOOP": event_loop}
            ingest = Service("ingest", env)
            try:
                asyncio.run(_wait_ready(url))
                time.sleep(0.5)
                results["rss_mb"].setdefault("ingest_at_rest", rss_mb(ingest.pid))
                with PeakRss({"ingest": ingest.pid}) as peak:
                    started = time.perf_counter()
                    accepted, _ = asyncio.run(_post_for(url, per_webhook, concurrency, duration_s))
                    rate = accepted / (time.perf_counter() - started)
                results["alerts_per_s"][str(per_webhook)] = rate
                results["rss_mb"][f"ingest_under_load_{per_webhook}"] = peak.peak["ingest"]
                if per_webhook == 100:
                    latencies = asyncio.run(_post_paced(url, 100, rate / 2, duration_s))
                    results["latency_at_half_rate"] = {
                        "alerts_per_s": rate / 2,
                        "webhooks": len(latencies),
                        "p50_ms": percentile(latencies, 50) * 1000,
                        "p99_ms": percentile(latencies, 99) * 1000,
                    }
            finally:
                ingest.stop()
    return results


# -- 2. dispatcher -----------------------------------------------------------------------------


def _kubeconfig(double: KubeDouble, path: Path) -> Path:
    path.write_text(yaml.safe_dump(double.kubeconfig()))
    return path


def double_ceiling(jobs: int, tmp: Path, threads: int = 16) -> float:
    """Jobs/s the API double takes from the dispatcher's own API call, 16 threads, nothing else running.

    The double runs here, as in the dispatcher benchmarks; the client runs in
    a process of its own, as a dispatcher does (bench.create_load).
    """
    double = KubeDouble().start()
    try:
        kubeconfig = _kubeconfig(double, tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}")
        subprocess.run([sys.executable, "-m", "bench.create_load", str(kubeconfig), str(jobs), str(threads)], cwd=ROOT, check=True, timeout=300)
        times = sorted(_job_times(double).values())
        if len(times) != jobs:
            raise RuntimeError(f"the API double holds {len(times)} of {jobs} Jobs")
        # From the first Job to the last, as for the dispatchers: start-up does not count.
        return (len(times) - 1) / (times[-1] - times[0])
    finally:
        double.stop()


def _reference_job_body() -> dict[str, Any]:
    from dispatcher.definitions import Definition
    from dispatcher.rendering import JobRules, render

    data = REFERENCE_CONFIGMAP["data"]["KubeQuotaAlmostFull"]
    envelope = envelopes_from_webhook(webhook(1, 0))[0]
    return render(Definition.parse("default/x", "KubeQuotaAlmostFull", data), envelope, JobRules(60)).body


def _fill_work_queue(amqp_url: str, prefix: str, alerts: int) -> None:
    async def run() -> None:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        exchange = await channel.get_exchange(Names(prefix).exchange)
        for start in range(0, alerts, 500):
            envelopes = envelopes_from_webhook(webhook(min(500, alerts - start), start))
            await asyncio.gather(
                *(exchange.publish(aio_pika.Message(e.to_json(), message_id=e.id), routing_key=ALERT_ROUTING_KEY) for e in envelopes)
            )
        await connection.close()

    asyncio.run(run())


def dispatcher_rate(
    amqp_url: str, processes: int, alerts: int, api_delay_s: float, tmp: Path, concurrency: int = 16, track_outcomes: bool = True
) -> dict[str, float]:
    """Jobs/s of ``processes`` dispatchers draining ``alerts`` waiting messages; their peak RSS.

    ``concurrency`` is each dispatcher's OPENFERO_KUBE_CONCURRENCY; ``track_outcomes`` its
    OPENFERO_TRACK_OUTCOMES (on: one of them leads and watches every Job created).
    """
    double = KubeDouble().start()
    try:
        double.apply("configmaps", "default", REFERENCE_CONFIGMAP)
        if api_delay_s:
            double.add_fault("POST", r"/jobs$", status=0, delay_s=api_delay_s)
        with fresh_prefix(amqp_url) as prefix:
            _fill_work_queue(amqp_url, prefix, alerts)
            env = {
                "OPENFERO_AMQP_URL": amqp_url,
                "OPENFERO_QUEUE_PREFIX": prefix,
                "KUBECONFIG": str(_kubeconfig(double, tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}")),
                "OPENFERO_METRICS_ADDR": "127.0.0.1:0",
                "OPENFERO_KUBE_CONCURRENCY": str(concurrency),
                "OPENFERO_TRACK_OUTCOMES": "1" if track_outcomes else "0",
            }
            workers = [Service("dispatcher", env, ("--exit-when-idle", "2")) for _ in range(processes)]
            with PeakRss({f"dispatcher{i}": w.pid for i, w in enumerate(workers)}) as peak:
                deadline = time.monotonic() + 300
                while not _job_times(double) and time.monotonic() < deadline:
                    time.sleep(0.005)
                # CPU from the first Job on: start-up (imports, connecting) does not count.
                jobs_before, cpu_before = len(_job_times(double)), sum(cpu_seconds(w.pid) for w in workers)
                double_cpu_before = time.process_time()  # this process: the API double, and this loop
                while len(_job_times(double)) < alerts and time.monotonic() < deadline:
                    time.sleep(0.05)
                jobs_after, cpu_after = len(_job_times(double)), sum(cpu_seconds(w.pid) for w in workers)
                double_cpu = time.process_time() - double_cpu_before
            for w in workers:
                w.stop()
        times = sorted(_job_times(double).values())
        # From the first Job to the last: start-up and the idle wait at the end do not count.
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        return {
            "jobs": len(times),
            "jobs_per_s": (len(times) - 1) / span,
            "cpu_ms_per_job": (cpu_after - cpu_before) / max(1, jobs_after - jobs_before) * 1000,
            "double_cpu_ms_per_job": double_cpu / max(1, jobs_after - jobs_before) * 1000,
            "peak_rss_mb": max(peak.peak.values()),
        }
    finally:
        double.stop()


def _job_times(double: KubeDouble) -> dict[str, float]:
    return double.job_creation_times()


def outcome_lag(amqp_url: str, jobs: int, tmp: Path, steady_per_s: float = 20.0) -> dict[str, Any]:
    """From a Job's end to its outcome fully recorded (marked, record confirmed, Event, finalizer off).

    One dispatcher, which leads; the benchmark plays the Job controller on
    the API double: half the Jobs end one at a time at ``steady_per_s``, the
    other half all at once. Each Job's lag runs from the moment the double
    stored its end to the moment it stored the removal of the finalizer.
    """
    from dispatcher.rendering import FINALIZER_OUTCOME

    def recorded(job: dict[str, Any]) -> bool:
        return FINALIZER_OUTCOME not in (job["metadata"].get("finalizers") or ())

    def wait(predicate: Any, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError("timed out")
            time.sleep(0.02)

    double = KubeDouble().start()
    try:
        double.apply("configmaps", "default", REFERENCE_CONFIGMAP)
        with fresh_prefix(amqp_url) as prefix:
            _fill_work_queue(amqp_url, prefix, jobs)
            env = {
                "OPENFERO_AMQP_URL": amqp_url,
                "OPENFERO_QUEUE_PREFIX": prefix,
                "KUBECONFIG": str(_kubeconfig(double, tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}")),
                "OPENFERO_METRICS_ADDR": "127.0.0.1:0",
            }
            dispatcher = Service("dispatcher", env)
            try:
                wait(lambda: len(double.job_creation_times()) >= jobs and double.get("leases", "default", f"{prefix}-outcomes") is not None)
                names = sorted(double.job_creation_times())
                ended: dict[str, float] = {}
                cpu_before = cpu_seconds(dispatcher.pid)
                half = len(names) // 2
                for name in names[:half]:
                    double.job_succeeded(name)
                    ended[name] = double.written_at[("jobs", "default", name)]
                    time.sleep(1 / steady_per_s)
                wait(lambda: double.count("jobs", "default", recorded) >= half)
                burst_started = time.time()
                for name in names[half:]:
                    double.job_succeeded(name)
                    ended[name] = double.written_at[("jobs", "default", name)]
                wait(lambda: double.count("jobs", "default", recorded) >= len(names))
                cpu_after = cpu_seconds(dispatcher.pid)
            finally:
                dispatcher.stop()
        lags = {name: double.written_at[("jobs", "default", name)] - at for name, at in ended.items()}

        def spread(values: list[float]) -> dict[str, float]:
            values = sorted(values)
            return {
                "p50_ms": values[len(values) // 2] * 1000,
                "p99_ms": values[min(len(values) - 1, int(len(values) * 0.99))] * 1000,
                "max_ms": values[-1] * 1000,
            }

        burst = [lags[n] for n in names[half:]]
        drained_s = max(double.written_at[("jobs", "default", n)] for n in names[half:]) - burst_started
        return {
            "jobs": len(names),
            "steady": {"per_s": steady_per_s, "jobs": half, **spread([lags[n] for n in names[:half]])},
            "burst": {"jobs": len(names) - half, "drained_s": drained_s, "outcomes_per_s": (len(names) - half) / drained_s, **spread(burst)},
            "cpu_ms_per_outcome": (cpu_after - cpu_before) / len(names) * 1000,
        }
    finally:
        double.stop()


# -- 3. end to end -----------------------------------------------------------------------------


@contextmanager
def double_process(tmp: Path) -> Iterator[tuple[str, Path]]:
    """The API double in a process of its own, with the reference ConfigMap; (URL, kubeconfig)."""
    port_file = tmp / f"double-{uuid.uuid4().hex[:6]}"
    configmap = tmp / "configmap.yaml"
    configmap.write_text(yaml.safe_dump(REFERENCE_CONFIGMAP))
    proc = subprocess.Popen([sys.executable, "-m", "tests.kube_double", str(port_file), str(configmap)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("the API double did not start")
            time.sleep(0.05)
        url = port_file.read_text()
        kubeconfig = tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}"
        kubeconfig.write_text(yaml.safe_dump(KubeDouble.kubeconfig_for(url)))
        yield url, kubeconfig
    finally:
        proc.terminate()
        proc.wait(10)


def end_to_end_latency(amqp_url: str, alerts_per_s: float, duration_s: float, tmp: Path) -> dict[str, float]:
    """Webhook sent -> Job created, one alert per webhook at a steady rate.

    The API double runs in a process of its own, so that the load generator
    and the double do not wait for each other.
    """
    import urllib.request

    def created(url: str) -> dict[str, float]:
        with urllib.request.urlopen(url + "/debug/created", timeout=10) as response:
            return json.loads(response.read())

    with double_process(tmp) as (double_url, kubeconfig), fresh_prefix(amqp_url) as prefix:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"OPENFERO_AMQP_URL": amqp_url, "OPENFERO_QUEUE_PREFIX": prefix, "OPENFERO_METRICS_ADDR": "127.0.0.1:0"}
        ingest = Service("ingest", {**env, "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}"})
        dispatcher = Service("dispatcher", {**env, "KUBECONFIG": str(kubeconfig)})
        try:
            asyncio.run(_wait_ready(url))
            time.sleep(2)  # the dispatcher connects and lists its definitions
            at_rest = rss_mb(dispatcher.pid)
            count = int(alerts_per_s * duration_s)
            pool = bodies(1, count)
            # The Job name is fixed by the alert: map names back to send times.
            names = [_job_name_of(body) for body in pool]
            sent: dict[str, float] = {}
            answered: dict[str, float] = {}

            async def one(session: aiohttp.ClientSession, n: int) -> None:
                sent[names[n]] = time.time()
                async with session.post(url + "/alerts", data=pool[n], headers=JSON) as response:
                    await response.read()
                    if response.status == 200:
                        answered[names[n]] = time.time()

            async def run() -> None:
                async with aiohttp.ClientSession() as session:
                    tasks = []
                    start = time.perf_counter()
                    for n in range(count):
                        await asyncio.sleep(max(0.0, start + n / alerts_per_s - time.perf_counter()))
                        tasks.append(asyncio.create_task(one(session, n)))
                    await asyncio.gather(*tasks)

            with PeakRss({"ingest": ingest.pid, "dispatcher": dispatcher.pid}) as peak:
                asyncio.run(run())
                deadline = time.monotonic() + 60
                while len(created(double_url)) < len(sent) and time.monotonic() < deadline:
                    time.sleep(0.1)
            jobs = created(double_url)
        finally:
            ingest.stop()
            dispatcher.stop()
    latencies = [jobs[name] - sent[name] for name in sent if name in jobs]
    # The two halves: webhook answered (stored on the broker), then Job created after that.
    webhook = [answered[name] - sent[name] for name in answered]
    after = [jobs[name] - answered[name] for name in answered if name in jobs]
    return {
        "alerts_per_s": alerts_per_s,
        "alerts": len(sent),
        "jobs": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "webhook_p50_ms": percentile(webhook, 50) * 1000,
        "webhook_p99_ms": percentile(webhook, 99) * 1000,
        "answer_to_job_p50_ms": percentile(after, 50) * 1000,
        "answer_to_job_p99_ms": percentile(after, 99) * 1000,
        "rss_mb_at_rest_dispatcher": at_rest,
        "peak_rss_mb_ingest": peak.peak["ingest"],
        "peak_rss_mb_dispatcher": peak.peak["dispatcher"],
    }


def _job_name_of(body: bytes) -> str:
    from dispatcher.rendering import job_name

    envelope = envelopes_from_webhook(json.loads(body))[0]
    return job_name(REFERENCE_CONFIGMAP["metadata"]["name"], envelope)


def create_call_cpu_us(tmp: Path, calls: int = 1000) -> dict[str, float]:
    """Client-side CPU per Job create: the generated BatchV1Api method against the dispatcher's call.

    Both through the same official client and connection pool, one thread,
    against the API double in a process of its own (its CPU does not count).
    """
    from kubernetes import client, config

    from dispatcher.jobs import JobCreator
    from shared.settings import KubeSettings

    body = _reference_job_body()
    with double_process(tmp) as (_, kubeconfig):
        api_client = config.new_client_from_config(str(kubeconfig))
        batch = client.BatchV1Api(api_client)
        creator = JobCreator(api_client, KubeSettings(job_namespace="default"), concurrency=1)

        def generated(name: str) -> None:
            batch.create_namespaced_job("default", {**body, "metadata": {**body["metadata"], "name": name}}, _preload_content=False).release_conn()

        def direct(name: str) -> None:
            creator._create_once({**body, "metadata": {**body["metadata"], "name": name}})

        out = {}
        for label, create in (("generated-method", generated), ("openfero", direct)):
            create(f"warm-{label}")
            started = time.thread_time()
            for i in range(calls):
                create(f"{label}-{i}")
            out[label] = (time.thread_time() - started) / calls * 1e6
        creator.close()
        return out


# -- 5. hostile webhooks ----------------------------------------------------------------------


def worst_case_bodies(limit: int, alerts: int = 10_000) -> dict[str, tuple[bytes, int]]:
    """The webhooks that cost ingest the most at a body limit, with the answer each should get.

    The most alerts, each as small as an alert can be (refused: too many);
    one label as large as the body (refused: too large); and the largest
    webhook taken: ``alerts`` alerts as large as the body allows, without
    fingerprints, so ingest computes each.
    """
    tiny = b'{"alerts":[' + b",".join([b'{"labels":{}}'] * ((limit - 20) // 14)) + b"]}"
    one_label = b'{"alerts":[{"labels":{"a":"' + b"x" * (limit - 40) + b'"}}]}'

    def taken(value_chars: int) -> bytes:
        labels = {f"label_{j:02d}": "v" * value_chars for j in range(13)}
        items = [{"labels": {**labels, "alertname": "Storm", "n": str(i)}, "annotations": {"summary": "s" * 150}} for i in range(alerts)]
        return json.dumps({"alerts": items}, separators=(",", ":")).encode()

    base = len(taken(0))
    largest = taken(max(0, (limit - base) // (13 * alerts) - 1))
    return {"tiny alerts": (tiny, 413), "one large label": (one_label, 422), "largest taken": (largest, 200)}


async def _while_posting(url: str, body: bytes) -> dict[str, Any]:
    """Post ``body`` while asking /healthz every 10 ms on a connection of its own; the answer and the slowest /healthz."""
    slowest, answers = 0.0, 0
    done = asyncio.Event()

    async def watch(session: aiohttp.ClientSession) -> None:
        nonlocal slowest, answers
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(url + "/healthz") as response:
                await response.read()
            slowest = max(slowest, time.perf_counter() - started)
            answers += 1
            await asyncio.sleep(0.01)

    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as poster, aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1)) as prober:
        watcher = asyncio.create_task(watch(prober))
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        async with poster.post(url + "/alerts", data=body, headers=JSON) as response:
            await response.read()
            status = response.status
        answer_s = time.perf_counter() - started
        await asyncio.sleep(0.2)
        done.set()
        await watcher
    return {"bytes": len(body), "status": status, "answer_s": answer_s, "slowest_healthz_ms": slowest * 1000, "healthz_answers": answers}


def hostile_webhooks(amqp_url: str, body_limit: int | None = None, root: Path = ROOT, alerts: int = 10_000) -> dict[str, Any]:
    """The worst-case webhooks at the default limits: the time to answer each and the slowest /healthz meanwhile.

    ``body_limit`` and ``root`` measure another version (the default limit of its own) for a before-and-after;
    a ``body_limit`` below the default is also set on ingest (the quick run's smaller bodies), as is ``alerts``.
    """
    from shared.settings import IngestSettings

    limit = body_limit or IngestSettings().max_body_bytes
    results: dict[str, Any] = {"body_limit": limit}
    with fresh_prefix(amqp_url) as prefix:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"OPENFERO_AMQP_URL": amqp_url, "OPENFERO_QUEUE_PREFIX": prefix, "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}"}
        if limit < IngestSettings().max_body_bytes:
            env |= {"OPENFERO_MAX_BODY_BYTES": str(limit), "OPENFERO_MAX_ALERTS_PER_WEBHOOK": str(alerts)}
        ingest = Service("ingest", env, root=root)
        try:
            asyncio.run(_wait_ready(url))
            time.sleep(1)  # the worker that reads large bodies starts with ingest
            pids = {"ingest": ingest.pid, **{f"child {pid}": pid for pid in _children(ingest.pid)}}
            for name, (body, expected) in worst_case_bodies(limit, alerts).items():
                with PeakRss(pids) as peak:
                    results[name] = {**asyncio.run(_while_posting(url, body)), "expected": expected}
                results[name]["peak_rss_mb"] = peak.peak
        finally:
            ingest.stop()
    return results


# -- 4. rendering ----------------------------------------------------------------------------


def render_times_us() -> dict[str, float]:
    from dispatcher.definitions import Definition
    from dispatcher.operarii import Operarius
    from dispatcher.rendering import JobRules, render

    envelope = envelopes_from_webhook(webhook(1, 0))[0]
    reference = Definition.parse("default/x", "KubeQuotaAlmostFull", REFERENCE_CONFIGMAP["data"]["KubeQuotaAlmostFull"])
    operarius = Operarius.from_resource(yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text()))
    crash = envelopes_from_webhook(json.loads((ROOT / "examples" / "kubepodcrashlooping.alert.json").read_text()))[0]
    out: dict[str, float] = {}
    for name, definition, alert in (("reference", reference, envelope), ("templated", operarius.definition, crash)):
        runs = 2000
        seconds = min(timeit.repeat(lambda d=definition, a=alert: render(d, a, JobRules(60)), number=runs, repeat=3))
        out[name] = seconds / runs * 1e6
    out.update(asyncio.run(_hostile_rendering()))
    return out


async def _hostile_rendering() -> dict[str, float]:
    """The worst hostile definition of the safety tests: its render time, and the longest stall of
    a dispatcher's event loop while it handles 20 alerts for it (rendering runs off the loop)."""
    from dispatcher.catalog import Catalog
    from dispatcher.handling import Handler
    from dispatcher.rendering import JobRules, render
    from tests.test_alert_data_safety import BOMBS, SCRIPTED, alert

    class Sink:

        dry_run = False

        async def create(self, body: dict[str, Any]) -> bool:
            return True

    from shared.loop import freeze_startup_heap

    freeze_startup_heap()  # as the dispatcher does once it is up
    labels = {"alertname": "A", **{f"l{i}": str(i) for i in range(99)}}
    worst_ms, stall_s = 0.0, 0.0
    for engine, bombs in BOMBS.items():
        for bomb in bombs:
            text = SCRIPTED.format(script="x").replace("'x'", json.dumps(bomb))
            text = text.replace("metadata: {name: fix}", f"metadata: {{name: fix, annotations: {{openfero.io/template-engine: {engine}}}}}")
            catalog = Catalog()
            catalog.replace_configmaps([{"metadata": {"name": "openfero-a-firing", "namespace": "n"}, "data": {"A": text}}])
            catalog.replace_operarii([])
            started = time.perf_counter()
            try:
                render(catalog.lookup(alert(labels).alert).definition, alert(labels), JobRules(60))
            except Exception:  # every bomb ends in a RenderError; its time is what is measured
                pass
            worst_ms = max(worst_ms, (time.perf_counter() - started) * 1000)
            handler = Handler(catalog, Sink(), JobRules(60))
            gaps = [0.0]

            async def tick() -> None:
                while True:
                    before = time.perf_counter()
                    await asyncio.sleep(0.001)
                    gaps.append(time.perf_counter() - before - 0.001)  # noqa: B023  # cancelled within the iteration

            ticker = asyncio.create_task(tick())
            await asyncio.gather(*(handler.handle(alert(labels).to_json(), {}) for _ in range(20)))
            ticker.cancel()
            stall_s = max(stall_s, max(gaps))
    return {"hostile_worst_ms": worst_ms, "loop_stall_worst_ms": stall_s * 1000}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "unknown")
    broker = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "python": sys.version.split()[0],
        "rabbitmq": broker,
    }



# -- 5. the console ----------------------------------------------------------------------------


def _fill_archive(amqp_url: str, prefix: str, alerts: int, span_s: float) -> list[tuple[str, str]]:
    """``alerts`` reference alerts in the archive, received over the last ``span_s`` seconds, oldest first.

    Returns (message id, fingerprint) of each, for Jobs to name.
    """
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    made: list[tuple[str, str]] = []

    async def run() -> None:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        archive = Names(prefix).archive
        for start in range(0, alerts, 500):
            count = min(500, alerts - start)
            received = now - timedelta(seconds=span_s * (1 - start / alerts))
            envelopes = envelopes_from_webhook(webhook(count, start), now=received)
            made.extend((e.id, e.alert.fingerprint) for e in envelopes)
            await asyncio.gather(
                *(channel.default_exchange.publish(aio_pika.Message(e.to_json(), message_id=e.id), routing_key=archive) for e in envelopes)
            )
        await connection.close()

    asyncio.run(run())
    return made


def _console_jobs(double: KubeDouble, made: list[tuple[str, str]]) -> None:
    """A Job for most alerts, in every state the timeline shows: the join the console makes for each row."""
    from datetime import datetime, timezone

    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    states = [
        {"conditions": [{"type": "Complete", "status": "True"}], "startTime": created, "completionTime": created},
        {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
        {"active": 1},
        {},
    ]
    for i, (message_id, alert_fingerprint) in enumerate(made):
        if i % 5 == 4:
            continue  # an alert without a Job
        double.apply(
            "jobs",
            "default",
            {
                "metadata": {
                    "name": f"fix-{i}",
                    "labels": {"app.kubernetes.io/managed-by": "openfero", "openfero.io/fingerprint": alert_fingerprint},
                    "annotations": {"openfero.io/message-id": message_id, "openfero.io/definition": "default/openfero-kubequotaalmostfull-firing/KubeQuotaAlmostFull"},
                },
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
                "status": states[i % 4],
            },
        )


def console_timeline(amqp_url: str, alerts: int, tmp: Path, loads: int = 5) -> dict[str, Any]:
    """The console's timeline with ``alerts`` alerts in its window (most with a Job): first paint in
    Debian's chromium, the page's server time, and the console's memory (RSS).

    The page lists the newest 500 rows (its default) over charts of all of them;
    ``limit=5000`` is measured beside it.
    """
    import re
    import urllib.request

    from playwright.sync_api import sync_playwright

    from tests.console_browser import launch_chromium

    double = KubeDouble().start()
    try:
        double.apply("configmaps", "default", REFERENCE_CONFIGMAP)
        with fresh_prefix(amqp_url) as prefix:
            made = _fill_archive(amqp_url, prefix, alerts, span_s=5 * 3600)
            _console_jobs(double, made)
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                "OPENFERO_AMQP_URL": amqp_url,
                "OPENFERO_QUEUE_PREFIX": prefix,
                "KUBECONFIG": str(_kubeconfig(double, tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}")),
                "OPENFERO_CONSOLE_ADDR": f"127.0.0.1:{port}",
                "OPENFERO_CONSOLE_AUTH": "none",
                "OPENFERO_CONSOLE_MAX_ALERTS": str(max(50000, alerts)),
                "OPENFERO_MANAGEMENT_URL": f"http://127.0.0.1:{_free_port()}",
            }
            started = time.perf_counter()
            console = Service("console", env)
            try:
                asyncio.run(_wait_ready(url))
                matched = 0
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    with urllib.request.urlopen(url + "/timeline?limit=1", timeout=30) as response:
                        found = re.search(r"(\d+) alerts match", response.read().decode())
                    matched = int(found.group(1)) if found else 0
                    jobs_seen = _jobs_on_page(url)
                    if matched >= alerts and jobs_seen:
                        break
                    time.sleep(0.5)
                ready_s = time.perf_counter() - started
                time.sleep(1)
                at_rest = rss_mb(console.pid)
                figures: dict[str, Any] = {"alerts": alerts, "matched": matched, "ready_s": ready_s, "rss_mb_loaded": at_rest}
                with sync_playwright() as playwright, PeakRss({"console": console.pid}) as peak:
                    browser = launch_chromium(playwright)
                    warm = browser.new_page()  # the browser's own start-up is not the page's
                    warm.goto(f"{url}/timeline?limit=1")
                    warm.close()
                    for limit in (500, 5000):
                        paints, servers, doms = [], [], []
                        for _ in range(loads):
                            page = browser.new_page(viewport={"width": 1366, "height": 768})
                            page.goto(f"{url}/timeline?limit={limit}", wait_until="load")
                            timing = page.evaluate(
                                "() => { const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');"
                                " const n = performance.getEntriesByType('navigation')[0];"
                                " return {fcp: p ? p.startTime : null, server: n.responseStart - n.requestStart, dom: n.domContentLoadedEventEnd, rows: document.querySelectorAll('tr.row').length}; }"
                            )
                            paints.append(timing["fcp"])
                            servers.append(timing["server"])
                            doms.append(timing["dom"])
                            figures[f"rows_{limit}"] = timing["rows"]
                            page.close()
                        figures[f"first_paint_ms_{limit}"] = percentile(paints, 50)
                        figures[f"first_paint_ms_{limit}_max"] = max(paints)
                        figures[f"server_ms_{limit}"] = percentile(servers, 50)
                        figures[f"dom_ready_ms_{limit}"] = percentile(doms, 50)
                    browser.close()
                figures["rss_mb_peak_serving"] = peak.peak["console"]
                return figures
            finally:
                console.stop()
    finally:
        double.stop()


def _jobs_on_page(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url + "/timeline?limit=5&outcome=succeeded", timeout=30) as response:
        return "fix-" in response.read().decode()
