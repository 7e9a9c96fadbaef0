"""The benchmark command runs and writes its report. Figures are not checked: benchmarks never fail on timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_the_quick_benchmark_writes_json_markdown_and_plots(tmp_path, amqp_url) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--amqp-url", amqp_url],
        cwd=ROOT, capture_output=True, text=True, timeout=500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for key in (
        "publisher_ceiling_per_s", "ingest", "ingest_asyncio_loop", "double_ceiling_jobs_per_s",
        "dispatcher_20ms_x2", "end_to_end", "render_us", "create_call_cpu_us", "ratios", "console_timeline", "dispatcher_no_latency_untracked", "outcomes", "hostile_webhooks", "storm",
    ):
        assert key in results
    hostile = results["hostile_webhooks"]
    assert [hostile[name]["status"] for name in ("tiny alerts", "one large label", "largest taken")] == [413, 422, 200]
    assert results["dispatcher_no_latency"]["cpu_ms_per_job"] > 0
    assert results["end_to_end"]["jobs"] == results["end_to_end"]["alerts"]  # every alert became its Job
    summary = (tmp_path / "summary.md").read_text()
    assert "## Ingest" in summary and "## End to end" in summary and "## Made faster" in summary and "## Console" in summary and "## Outcomes" in summary and "Worst-case webhooks" in summary
    console = results["console_timeline"]
    assert console["matched"] == console["alerts"] == 1000 and console["rows_500"] == 500 and console["first_paint_ms_500"] > 0
    assert results["outcomes"]["burst"]["jobs"] + results["outcomes"]["steady"]["jobs"] == results["outcomes"]["jobs"]
    assert (tmp_path / "ingest.png").stat().st_size > 1000 and (tmp_path / "dispatcher.png").stat().st_size > 1000
    # the storm: every alert ran, never more at once than the definition allows
    assert results["storm"]["jobs"] == results["storm"]["alerts"] and results["storm"]["max_active"] <= results["storm"]["concurrency"]
    assert "## Storm control" in summary and (tmp_path / "storm.png").stat().st_size > 1000
