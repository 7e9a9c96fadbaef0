"""What the console's browser tests share: Debian's chromium under Playwright and the stack it drives.

One stack for a test module (ingest, a dispatcher, a console and a read-only
console, the API double, one queue prefix) and one browser; each test uses
alertnames of its own. Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml

from shared.settings import RetrySettings, positive_seconds
from shared.topology import Names, delete
from tests.conftest import ROOT, TEST_RETRY_DELAYS, free_port, wait_for, write_kubeconfig
from tests.harness import Pipeline, Process, get_status, post, queue_depths, webhook
from tests.kube_double import KubeDouble

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("OPENFERO_SCREENSHOTS_DIR") or ROOT / "build" / "console-screenshots")
USER, PASSWORD = "ops", "a console password"
LAPTOP = {"width": 1366, "height": 768}


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium under Playwright; a clear failure, never a skip, when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
            "(scripts/system-packages installs it, as .ci/run does)",
            pytrace=False,
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def off_thread(function: Any, *args: Any) -> Any:
    """Run ``function`` on a thread of its own: Playwright's sync API holds this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def dead_count(stack: Stack) -> int:
    return off_thread(queue_depths, stack.amqp_url, stack.prefix)["dead"]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def definition(alertname: str) -> dict[str, Any]:
    text = (
        f"apiVersion: batch/v1\nkind: Job\nmetadata: {{name: fix-{alertname.lower()}}}\n"
        "spec: {template: {spec: {restartPolicy: Never, containers: [{name: fix, image: busybox, command: [sh, -c, 'echo $OPENFERO_POD']}]}}}"
    )
    return {"metadata": {"name": f"openfero-{alertname.lower()}-firing", "labels": {"app": "openfero"}}, "data": {alertname: text}}


@dataclass
class Stack:
    url: str
    read_only_url: str
    double: KubeDouble
    pipeline: Pipeline
    amqp_url: str
    prefix: str

    def post(self, alerts: list[dict[str, Any]]) -> None:
        status, body = post(self.pipeline.url + "/alerts", webhook(alerts))
        assert status == 200, body

    def jobs(self, alertname: str) -> list[dict[str, Any]]:
        return [j for j in self.double.jobs() if j["metadata"]["labels"].get("openfero.io/alertname") == alertname]


def start_console(env: dict[str, str], tmp: Path, name: str, extra: dict[str, str], processes: list[Process]) -> str:
    port = free_port()
    process = Process("console", {**env, "OPENFERO_CONSOLE_ADDR": f"127.0.0.1:{port}", **extra}, tmp / f"{name}.log")
    processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_status(url + "/readiness") == 200, what=f"the {name} console ready")
    return url


@pytest.fixture(scope="module")
def stack(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    prefix = f"oftest-{uuid.uuid4().hex[:10]}"
    double = KubeDouble().start()
    for alertname in ("LiveAlert", "ReplayMe", "Hostile"):
        double.apply("configmaps", "default", definition(alertname))
    double.apply("operariuses", "default", yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text()))
    env = {
        "OPENFERO_AMQP_URL": amqp_url,
        "OPENFERO_QUEUE_PREFIX": prefix,
        "OPENFERO_RECONNECT_MAX_SECONDS": "0.5",
        "KUBECONFIG": str(write_kubeconfig(double, tmp)),
        "OPENFERO_RETRY_DELAYS_SECONDS": TEST_RETRY_DELAYS,
        "OPENFERO_RETRY_MAX_ATTEMPTS": "4",
        "OPENFERO_METRICS_ADDR": "127.0.0.1:0",
        "OPENFERO_MANAGEMENT_URL": f"http://127.0.0.1:{free_port()}",  # none there: the page says so
        "OPENFERO_CONSOLE_AUTH": "basic",
        "OPENFERO_CONSOLE_AUTH_USERNAME": USER,
        "OPENFERO_CONSOLE_AUTH_PASSWORD": PASSWORD,
        "PYTHONUNBUFFERED": "1",
    }
    processes: list[Process] = []
    try:
        pipeline = Pipeline(processes, env, tmp)
        url = start_console(env, tmp, "console", {}, processes)
        read_only = start_console(env, tmp, "console-read-only", {"OPENFERO_CONSOLE_READ_ONLY": "true"}, processes)
        yield Stack(url, read_only, double, pipeline, amqp_url, prefix)
    finally:
        for process in processes:
            process.stop()
        double.stop()

        async def cleanup() -> None:
            connection = await aio_pika.connect(amqp_url)
            await delete(await connection.channel(), Names(prefix), RetrySettings().delays_s + positive_seconds(TEST_RETRY_DELAYS))
            await connection.close()

        off_thread(asyncio.run, cleanup())


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD}, viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.errors = errors  # what the browser complained of, CSP refusals included
    yield page
    context.close()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def open_live(page: Any, url: str) -> None:
    """Open the timeline and wait until its live stream is open; mark the page to prove it is never reloaded."""
    page.goto(url)
    page.wait_for_selector("body[data-live]", timeout=10_000)
    page.evaluate("window.__notReloaded = true")


def row(page: Any, text: str) -> Any:
    return page.locator("tbody#rows tr.row", has_text=text)


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__notReloaded") is True
