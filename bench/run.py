"""Run every benchmark, then write JSON, a Markdown summary and PNG plots."""

from __future__ import annotations

import json
import math
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from bench import measure, storm

TARGETS = {
    "ingest_100_vs_ceiling": 0.7,
    "dispatcher_speedup_1_to_4": 3.5,
    "end_to_end_p99_ms": 100.0,
}


def run_all(amqp_url: str, quick: bool) -> dict[str, Any]:
    duration = 1.0 if quick else 5.0
    # The quick run is a smoke test of every step (the suite runs it): fewer processes, smaller bodies.
    process_counts = (1, 2) if quick else (1, 2, 4)
    tmp = Path(tempfile.mkdtemp(prefix="openfero-bench-"))
    steps: list[tuple[str, Any]] = [
        ("machine", measure.machine),
        ("publisher_ceiling_per_s", lambda: measure.publisher_ceiling(amqp_url, 5000 if quick else 20000)),
        ("ingest", lambda: measure.ingest_throughput(amqp_url, duration)),
        # Before/after of the event loop, in the same run: the standard library's.
        ("ingest_asyncio_loop", lambda: measure.ingest_throughput(amqp_url, duration, sizes=(100,), event_loop="asyncio")),
        # The worst webhooks at the default limits, and how /healthz fares meanwhile.
        ("hostile_webhooks", lambda: measure.hostile_webhooks(amqp_url, body_limit=2 * 1024 * 1024, alerts=1000) if quick else measure.hostile_webhooks(amqp_url)),
        ("double_ceiling_jobs_per_s", lambda: measure.double_ceiling(500 if quick else 2000, tmp)),
        ("dispatcher_no_latency", lambda: measure.dispatcher_rate(amqp_url, 1, 500 if quick else 2000, 0.0, tmp)),
        # The same without outcome tracking: what following every Job costs the leader.
        ("dispatcher_no_latency_untracked", lambda: measure.dispatcher_rate(amqp_url, 1, 300 if quick else 2000, 0.0, tmp, track_outcomes=False)),
        ("outcomes", lambda: measure.outcome_lag(amqp_url, 60 if quick else 1000, tmp)),
    ]
    for processes in process_counts:
        steps.append((f"dispatcher_20ms_x{processes}", lambda p=processes: measure.dispatcher_rate(amqp_url, p, 400 if quick else 1600, 0.02, tmp)))
    # Two calls at a time per process: each process is bound by the latency, not
    # by the 2 cores, so this shows whether more processes hide it.
    for processes in process_counts:
        steps.append(
            (f"dispatcher_20ms_c2_x{processes}", lambda p=processes: measure.dispatcher_rate(amqp_url, p, 200 if quick else 800, 0.02, tmp, concurrency=2))
        )
    steps += [
        ("end_to_end", lambda: measure.end_to_end_latency(amqp_url, 200.0, 3.0 if quick else 10.0, tmp)),
        ("render_us", measure.render_times_us),
        ("create_call_cpu_us", lambda: measure.create_call_cpu_us(tmp, 300 if quick else 1000)),
        ("console_timeline", lambda: measure.console_timeline(amqp_url, 1000 if quick else 10000, tmp, loads=2 if quick else 5)),
        # 5,000 alerts for one definition with concurrency 10, each Job ending 1 s after it starts: about 9 minutes.
        ("storm", lambda: storm.storm(amqp_url, 60 if quick else 5000, tmp, run_s=0.5 if quick else 1.0)),
    ]
    results: dict[str, Any] = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": quick, "process_counts": list(process_counts)}
    for name, step in steps:
        started = time.perf_counter()
        click.echo(f"{name} ...", err=True, nl=False)
        results[name] = step()
        click.echo(f" {time.perf_counter() - started:.1f} s", err=True)
    ceiling = results["publisher_ceiling_per_s"]
    ingest = results["ingest"]["alerts_per_s"]
    top = max(process_counts)
    results["ratios"] = {
        "ingest_100_vs_ceiling": ingest["100"] / ceiling,
        "ingest_100_asyncio_loop_vs_ceiling": results["ingest_asyncio_loop"]["alerts_per_s"]["100"] / ceiling,
        "dispatcher_vs_double_ceiling": results["dispatcher_no_latency"]["jobs_per_s"] / results["double_ceiling_jobs_per_s"],
        f"dispatcher_speedup_1_to_{top}": results[f"dispatcher_20ms_x{top}"]["jobs_per_s"] / results["dispatcher_20ms_x1"]["jobs_per_s"],
        f"dispatcher_speedup_1_to_{top}_latency_bound": results[f"dispatcher_20ms_c2_x{top}"]["jobs_per_s"] / results["dispatcher_20ms_c2_x1"]["jobs_per_s"],
    }
    return results


def summary(results: dict[str, Any]) -> str:
    m, r = results["machine"], results["ratios"]
    ingest = results["ingest"]
    e2e = results["end_to_end"]
    ceiling = results["publisher_ceiling_per_s"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        f"# openfero benchmarks ({results['when']}{', quick' if results['quick'] else ''})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; RabbitMQ {m['rabbitmq']}.",
        "Every figure beside its ceiling from the same run; the load generator runs on the same machine.",
        "",
        "## Ingest (alerts accepted = confirmed by the broker)",
        "",
        "| alerts per webhook | alerts/s | share of the publisher ceiling |",
        "| --- | --- | --- |",
    ]
    for per, rate in ingest["alerts_per_s"].items():
        lines.append(f"| {per} | {rate:,.0f} | {rate / ceiling:.2f} |")
    before = results["ingest_asyncio_loop"]["alerts_per_s"]["100"]
    lines += [
        f"| 100, on the standard asyncio loop (OPENFERO_EVENT_LOOP=asyncio; uvloop is the default) | {before:,.0f} | {before / ceiling:.2f} |",
        f"| ceiling: one aio-pika publisher, confirms, 500 in flight | {ceiling:,.0f} | 1.00 |",
        "",
        f"Target ≥ {TARGETS['ingest_100_vs_ceiling']} of the ceiling with 100-alert webhooks: {r['ingest_100_vs_ceiling']:.2f}, "
        f"{verdict(r['ingest_100_vs_ceiling'] >= TARGETS['ingest_100_vs_ceiling'])}.",
    ]
    half = ingest.get("latency_at_half_rate")
    if half:
        lines.append(
            f"Latency of 100-alert webhooks at half the best rate ({half['alerts_per_s']:,.0f} alerts/s): "
            f"p50 {half['p50_ms']:.1f} ms, p99 {half['p99_ms']:.1f} ms ({half['webhooks']} webhooks)."
        )
    hostile = results["hostile_webhooks"]
    lines += [
        "",
        f"### Worst-case webhooks at the default limits (body limit {hostile['body_limit'] / 2**20:.0f} MiB)",
        "",
        "| webhook | body | answer | answered in | slowest /healthz meanwhile (target < 100 ms) | peak RSS, ingest + its worker |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, case in hostile.items():
        if not isinstance(case, dict):
            continue
        rss = " + ".join(f"{v:.0f}" for v in case["peak_rss_mb"].values())
        lines.append(
            f"| {name} | {case['bytes'] / 2**20:.1f} MiB | {case['status']} (expected {case['expected']}) | {case['answer_s']:.2f} s | "
            f"{case['slowest_healthz_ms']:.0f} ms ({case['healthz_answers']} answers) | {rss} MB |"
        )
    d0 = results["dispatcher_no_latency"]
    lines += [
        "",
        "## Dispatcher (Jobs created through the API double)",
        "",
        "| setup | Jobs/s | dispatcher CPU per Job |",
        "| --- | --- | --- |",
        f"| ceiling: the double, the dispatcher's API call from a process of its own, 16 threads | {results['double_ceiling_jobs_per_s']:,.0f} | |",
        f"| 1 dispatcher, API answering at once | {d0['jobs_per_s']:,.0f} ({r['dispatcher_vs_double_ceiling']:.2f} of the ceiling) | {d0['cpu_ms_per_job']:.2f} ms |",
        f"| the same, outcome tracking off (no Lease, no watch of the Jobs) | {results['dispatcher_no_latency_untracked']['jobs_per_s']:,.0f} | "
        f"{results['dispatcher_no_latency_untracked']['cpu_ms_per_job']:.2f} ms |",
    ]
    for p in results["process_counts"]:
        run = results[f"dispatcher_20ms_x{p}"]
        lines.append(f"| {p} dispatcher{'s' if p > 1 else ''}, 20 ms API latency | {run['jobs_per_s']:,.0f} | {run['cpu_ms_per_job']:.2f} ms |")
    for p in results["process_counts"]:
        run = results[f"dispatcher_20ms_c2_x{p}"]
        lines.append(
            f"| {p} dispatcher{'s' if p > 1 else ''}, 20 ms API latency, 2 calls at a time each | {run['jobs_per_s']:,.0f} | {run['cpu_ms_per_job']:.2f} ms |"
        )
    calls = results["create_call_cpu_us"]
    lines += [
        "",
        f"Client CPU per Job create, one thread: {calls['openfero']:.0f} µs as the dispatcher calls the API, "
        f"{calls['generated-method']:.0f} µs through the generated `BatchV1Api.create_namespaced_job` (same client and pool).",
    ]
    if "dispatcher_speedup_1_to_4" in r:
        lines += [
            "",
            f"Target ≥ {TARGETS['dispatcher_speedup_1_to_4']}× from 1 to 4 dispatchers with 20 ms latency: "
            f"{r['dispatcher_speedup_1_to_4']:.2f}× with 16 calls at a time each (one process already hides the latency; "
            f"the 2 cores, shared with the broker, the API double and the load generator, cap the rest), {r['dispatcher_speedup_1_to_4_latency_bound']:.2f}× with 2 calls at a time each, "
            f"{verdict(r['dispatcher_speedup_1_to_4_latency_bound'] >= TARGETS['dispatcher_speedup_1_to_4'])}.",
        ]
    lines += [
        "",
        "## Outcomes (a Job's end → its outcome recorded: marked, record confirmed, Event, finalizer off)",
        "",
        "| Jobs ending | Jobs | p50 | p99 | max | |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| one at a time, {results['outcomes']['steady']['per_s']:.0f}/s | {results['outcomes']['steady']['jobs']} | "
        f"{results['outcomes']['steady']['p50_ms']:.1f} ms | {results['outcomes']['steady']['p99_ms']:.1f} ms | {results['outcomes']['steady']['max_ms']:.1f} ms | |",
        f"| all at once | {results['outcomes']['burst']['jobs']} | {results['outcomes']['burst']['p50_ms']:.0f} ms | "
        f"{results['outcomes']['burst']['p99_ms']:.0f} ms | {results['outcomes']['burst']['max_ms']:.0f} ms | "
        f"{results['outcomes']['burst']['outcomes_per_s']:,.0f} outcomes/s |",
        "",
        f"The leader's CPU per outcome: {results['outcomes']['cpu_ms_per_outcome']:.2f} ms.",
        "",
        "## End to end (webhook sent → Job created)",
        "",
        f"{e2e['alerts']} alerts at a steady {e2e['alerts_per_s']:.0f} alerts/s, one per webhook, {e2e['jobs']} Jobs: "
        f"p50 {e2e['p50_ms']:.1f} ms, p99 {e2e['p99_ms']:.1f} ms, max {e2e['max_ms']:.1f} ms. "
        f"Target p99 < {TARGETS['end_to_end_p99_ms']:.0f} ms: {verdict(e2e['p99_ms'] < TARGETS['end_to_end_p99_ms'])}.",
        f"The two halves: webhook answered p50 {e2e['webhook_p50_ms']:.1f} ms, p99 {e2e['webhook_p99_ms']:.1f} ms; "
        f"from the answer to the Job p50 {e2e['answer_to_job_p50_ms']:.1f} ms, p99 {e2e['answer_to_job_p99_ms']:.1f} ms.",
        "",
        "## Made faster (before and after, both measured in this run)",
        "",
        "| hot path (found with py-spy) | before | after |",
        "| --- | --- | --- |",
        f"| ingest's event loop, 100-alert webhooks: asyncio → uvloop | {before:,.0f} alerts/s | {ingest['alerts_per_s']['100']:,.0f} alerts/s |",
        f"| client CPU per Job create: generated method (model validation and projection) → the dispatcher's call | "
        f"{calls['generated-method']:.0f} µs | {calls['openfero']:.0f} µs |",
        "",
        "## Rendering (per Job)",
        "",
        f"Reference definition: {results['render_us']['reference']:.0f} µs; templated Operarius: {results['render_us']['templated']:.0f} µs. "
        f"The slowest hostile definition of the safety tests ends in {results['render_us']['hostile_worst_ms']:.1f} ms (a dead letter naming "
        f"the limit); the longest stall of the dispatcher's event loop while it handles them: {results['render_us']['loop_stall_worst_ms']:.1f} ms.",
        "",
        "## Memory (RSS)",
        "",
        f"Ingest at rest {ingest['rss_mb']['ingest_at_rest']:.0f} MB, under load up to "
        f"{max(v for k, v in ingest['rss_mb'].items() if k.startswith('ingest_under_load')):.0f} MB; "
        f"a dispatcher at rest {e2e['rss_mb_at_rest_dispatcher']:.0f} MB, under load up to {max(results[f'dispatcher_20ms_x{p}']['peak_rss_mb'] for p in results['process_counts']):.0f} MB "
        f"(end to end: ingest {e2e['peak_rss_mb_ingest']:.0f} MB, dispatcher {e2e['peak_rss_mb_dispatcher']:.0f} MB).",
    ]
    c = results["console_timeline"]
    lines += [
        "",
        "## Console (the timeline in Debian's chromium)",
        "",
        f"{c['alerts']:,} alerts in the window, four in five with a Job; the console read them all and joined their Jobs "
        f"{c['ready_s']:.1f} s after it started.",
        "",
        "| rows listed | first contentful paint (median / max) | server time of the page | DOM ready |",
        "| --- | --- | --- | --- |",
    ]
    for limit in (500, 5000):
        lines.append(
            f"| {c[f'rows_{limit}']:,} (limit={limit}) | {c[f'first_paint_ms_{limit}']:.0f} / {c[f'first_paint_ms_{limit}_max']:.0f} ms | "
            f"{c[f'server_ms_{limit}']:.0f} ms | {c[f'dom_ready_ms_{limit}']:.0f} ms |"
        )
    lines += [
        "",
        f"Console memory (RSS): {c['rss_mb_loaded']:.0f} MB with the window loaded, {c['rss_mb_peak_serving']:.0f} MB at most while serving the pages.",
        "",
        *storm_summary(results["storm"]),
    ]
    return "\n".join(lines) + "\n"


def storm_summary(s: dict[str, Any]) -> list[str]:
    return [
        f"## Storm control ({s['alerts']:,} alerts for one definition, concurrency {s['concurrency']}, each Job ending {s['run_s']:g} s after it starts)",
        "",
        f"One dispatcher (the wait leader), outcome tracking on. Drained in {s['drain_s']:.0f} s from the first Job to the last one's end "
        f"(at best {s['ideal_drain_s']:.0f} s: {s['alerts']:,} / {s['concurrency']} × {s['run_s']:g} s); at most {s['max_active']} Jobs active at once; "
        f"{s['jobs']:,} Jobs. The dispatcher's CPU while the alerts waited: {s['cpu_share_mean'] * 100:.0f} % of a core on average "
        f"(p50 of each second {s['cpu_share_p50'] * 100:.0f} %, max {s['cpu_share_max'] * 100:.0f} %), {s['cpu_ms_per_job']:.1f} ms per Job; "
        "nothing is republished while it waits. Plot: `storm.png`.",
    ]


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    labels = [f"{k}/webhook" for k in results["ingest"]["alerts_per_s"]] + ["100/webhook\nasyncio loop", "publisher\nceiling"]
    values = [*results["ingest"]["alerts_per_s"].values(), results["ingest_asyncio_loop"]["alerts_per_s"]["100"], results["publisher_ceiling_per_s"]]
    ax.bar(labels, values, color=["#4c72b0"] * (len(values) - 2) + ["#dd8452", "#999999"])
    ax.set_ylabel("alerts/s (confirmed)")
    ax.set_title("Ingest throughput")
    fig.tight_layout()
    written.append(out / "ingest.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    procs = results["process_counts"]
    rates = [results[f"dispatcher_20ms_x{p}"]["jobs_per_s"] for p in procs]
    bound = [results[f"dispatcher_20ms_c2_x{p}"]["jobs_per_s"] for p in procs]
    ax.plot(procs, rates, marker="o", label="16 calls at a time each")
    ax.plot(procs, bound, marker="s", label="2 calls at a time each")
    ax.plot(procs, [bound[0] * p for p in procs], linestyle="--", color="#999999", label="linear from 2 at a time")
    ax.axhline(results["double_ceiling_jobs_per_s"], linestyle=":", color="#c44e52", label="the API double's ceiling")
    ax.set_xticks(procs)
    ax.set_xlabel("dispatcher processes")
    ax.set_ylabel("Jobs/s")
    ax.set_title("Dispatchers, 20 ms API latency")
    ax.legend(fontsize="small")
    fig.tight_layout()
    written.append(out / "dispatcher.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    if "storm" in results:
        written.append(storm.plot(results["storm"], out / "storm.png"))
    return written


@click.command()
@click.option("--amqp-url", envvar="OPENFERO_AMQP_URL", default="amqp://guest:guest@127.0.0.1:5672/", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results"), show_default=True)
@click.option("--quick", is_flag=True, help="Shorter runs: a smoke test of the benchmarks, not figures to quote.")
@click.option("--storm", "storm_only", is_flag=True, help="Instead: the storm alone (bench.storm); writes storm.json, storm.md and storm.png.")
@click.option(
    "--faults",
    is_flag=True,
    help="Instead: broker node faults on a three-node cluster of its own (bench.faults); writes faults.json and faults.md.",
)
def main(amqp_url: str, out: Path, quick: bool, faults: bool, storm_only: bool) -> None:
    """Measure openfero against its ceilings on this machine; write JSON, Markdown and PNG plots."""
    if storm_only:
        out.mkdir(parents=True, exist_ok=True)
        result = storm.storm(amqp_url, 200 if quick else 5000, Path(tempfile.mkdtemp(prefix="openfero-bench-")))
        (out / "storm.json").write_text(json.dumps(result) + "\n")
        text = "\n".join(storm_summary(result)) + "\n"
        (out / "storm.md").write_text(text)
        click.echo(f"wrote {storm.plot(result, out / 'storm.png')}", err=True)
        click.echo(text)
        return
    if faults:
        from bench import faults as fault_runs

        click.echo(fault_runs.main(out, quick, lambda line: click.echo(line, err=True)))
        return
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(amqp_url, quick)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)) + "\n")
    text = summary(results)
    (out / "summary.md").write_text(text)
    for path in plots(results, out):
        click.echo(f"wrote {path}", err=True)
    click.echo(text)
