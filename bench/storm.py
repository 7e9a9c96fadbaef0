"""A storm: thousands of alerts for one definition that allows 10 Jobs at once, each Job "running" 1 s.

One dispatcher as users run it (it is the wait leader), the API double in
this process, and this process playing the Job controller: a Job starts
when it is created and succeeds 1 s later. Measured: the Jobs active over
time, the time to drain, the most active at once, and the dispatcher's CPU
while the alerts wait.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.measure import REFERENCE_CONFIGMAP, Service, _fill_work_queue, _kubeconfig, cpu_seconds, fresh_prefix
from tests.kube_double import KubeDouble


class Controller:
    """Kubernetes' Job controller for the storm: start each new Job, end it ``run_s`` after its creation."""

    def __init__(self, double: KubeDouble, run_s: float):
        self.double = double
        self.run_s = run_s
        self.started: dict[str, float] = {}
        self.done: set[str] = set()
        self.samples: list[tuple[float, int]] = []  # (time.time(), active Jobs)
        self.max_active = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Controller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = time.time()
            for name, created in self.double.job_creation_times().items():
                if name not in self.started:
                    self.started[name] = created
                    self.double.job_started(name)
                if name not in self.done and now - self.started[name] >= self.run_s:
                    self.double.job_succeeded(name)
                    self.done.add(name)
            active = len(self.started) - len(self.done)
            self.max_active = max(self.max_active, active)
            self.samples.append((now, active))


def storm(amqp_url: str, alerts: int, tmp: Path, concurrency: int = 10, run_s: float = 1.0, track_outcomes: bool = True) -> dict[str, Any]:
    double = KubeDouble().start()
    configmap = copy.deepcopy(REFERENCE_CONFIGMAP)
    configmap["metadata"].setdefault("annotations", {})["openfero.io/concurrency"] = str(concurrency)
    try:
        double.apply("configmaps", "default", configmap)
        with fresh_prefix(amqp_url) as prefix:
            _fill_work_queue(amqp_url, prefix, alerts)
            env = {
                "OPENFERO_AMQP_URL": amqp_url,
                "OPENFERO_QUEUE_PREFIX": prefix,
                "KUBECONFIG": str(_kubeconfig(double, tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}")),
                "OPENFERO_METRICS_ADDR": "127.0.0.1:0",
                "OPENFERO_TRACK_OUTCOMES": "1" if track_outcomes else "0",
            }
            started = time.time()
            dispatcher = Service("dispatcher", env)
            try:
                with Controller(double, run_s) as controller:
                    deadline = time.monotonic() + alerts * run_s / concurrency * 3 + 120
                    while not double.job_creation_times() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    first_job = time.time()
                    cpu_before = cpu_seconds(dispatcher.pid)
                    # CPU each second while alerts wait
                    cpu_samples: list[tuple[float, float]] = []
                    last_cpu, last_at = cpu_before, time.monotonic()
                    while len(controller.done) < alerts and time.monotonic() < deadline:
                        time.sleep(1.0)
                        cpu, at = cpu_seconds(dispatcher.pid), time.monotonic()
                        cpu_samples.append((time.time() - first_job, (cpu - last_cpu) / (at - last_at)))
                        last_cpu, last_at = cpu, at
                    drained = time.time()
                    cpu_after = cpu_seconds(dispatcher.pid)
            finally:
                dispatcher.stop()
        drain_s = drained - first_job
        ideal_s = alerts / concurrency * run_s
        shares = sorted(share for _, share in cpu_samples)
        return {
            "alerts": alerts,
            "concurrency": concurrency,
            "run_s": run_s,
            "jobs": len(controller.done),
            "max_active": controller.max_active,
            "drain_s": drain_s,
            "ideal_drain_s": ideal_s,
            "start_s": first_job - started,
            "cpu_s": cpu_after - cpu_before,
            "cpu_share_mean": (cpu_after - cpu_before) / drain_s,
            "cpu_share_p50": shares[len(shares) // 2] if shares else float("nan"),
            "cpu_share_max": shares[-1] if shares else float("nan"),
            "cpu_ms_per_job": (cpu_after - cpu_before) / max(1, len(controller.done)) * 1000,
            "active_per_second": per_second([(at - first_job, n) for at, n in controller.samples]),
            "cpu_over_time": [(round(at, 1), round(share, 4)) for at, share in cpu_samples],
        }
    finally:
        double.stop()


def per_second(samples: list[tuple[float, int]]) -> list[tuple[int, float, int]]:
    """(second, mean, most) of the Jobs active, each second from the first Job on."""
    seconds: dict[int, list[int]] = {}
    for at, active in samples:
        if at >= 0:
            seconds.setdefault(int(at), []).append(active)
    return [(second, round(sum(v) / len(v), 2), max(v)) for second, v in sorted(seconds.items())]


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    rows = result["active_per_second"]
    xs = [second for second, _, _ in rows]
    ax.plot(xs, [mean for _, mean, _ in rows], linewidth=0.9, label="Jobs active (mean of each second)")
    ax.plot(xs, [most for _, _, most in rows], linewidth=0.6, color="#55a868", label="most at once in each second")
    ax.axhline(result["concurrency"], linestyle="--", color="#c44e52", label=f"limit ({result['concurrency']})")
    ax.set_xlabel("seconds since the first Job")
    ax.set_ylabel("Jobs active")
    ax.set_ylim(0, result["concurrency"] * 1.5)
    cpu = ax.twinx()
    cpu.plot([at for at, _ in result["cpu_over_time"]], [share * 100 for _, share in result["cpu_over_time"]], color="#999999", linewidth=0.8, label="dispatcher CPU")
    cpu.set_ylabel("dispatcher CPU (% of a core)")
    cpu.set_ylim(0, 100)
    ax.set_title(f"Storm: {result['alerts']:,} alerts, concurrency {result['concurrency']}, Jobs of {result['run_s']:g} s")
    lines = ax.get_legend_handles_labels()[0] + cpu.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], fontsize="small", loc="lower center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
