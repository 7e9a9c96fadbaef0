"""The console in a real browser: Debian's chromium driven by Playwright, against the real processes.

One stack for the module and one browser for the run (tests/console_browser.py);
each test uses alertnames of its own. Screenshots of the main views are
written to build/console-screenshots/ (OPENFERO_SCREENSHOTS_DIR to change
it); the README's are copies of these (docs/console/).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.console_browser import Stack, assert_not_reloaded, browser, dead_count, expect, open_live, page, row, screenshot, stack

__all__ = ["browser", "page", "stack"]  # fixtures, found by pytest in this module's namespace

pytestmark = pytest.mark.e2e


# -- the tests -------------------------------------------------------------------------------------


def test_alerts_posted_to_ingest_appear_on_the_timeline_live(stack: Stack, page: Any) -> None:
    open_live(page, stack.url + "/timeline")
    # When: alerts reach ingest while the page is open
    stack.post([{"labels": {"alertname": "LiveAlert", "pod": f"web-{i}", "namespace": "shop"}, "startsAt": "2026-01-01T00:00:00Z"} for i in range(3)])
    # Then: they appear without a reload, with the definition they matched and, soon, their Jobs
    rows = row(page, "LiveAlert")
    rows.nth(2).wait_for(timeout=15_000)
    assert rows.count() == 3
    for i in range(3):
        assert row(page, f"web-{i}").locator(".job bdi").inner_text(timeout=15_000).startswith("fix-livealert-")
    assert "default/openfero-livealert-firing/LiveAlert" in rows.first.inner_text()
    assert_not_reloaded(page)
    assert page.errors == []


def test_a_jobs_outcome_shows_as_it_changes_without_a_reload(stack: Stack, page: Any) -> None:
    stack.post([{"labels": {"alertname": "LiveAlert", "pod": f"ends-{i}", "namespace": "shop"}, "startsAt": "2026-01-01T00:00:00Z"} for i in range(2)])
    wait_for(lambda: len([j for j in stack.jobs("LiveAlert") if "ends-" in json.dumps(j)]) == 2, what="the two Jobs")
    open_live(page, stack.url + "/timeline?q=ends-")
    jobs = {next(e["value"] for e in j["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "OPENFERO_POD"): j for j in stack.jobs("LiveAlert") if "ends-" in json.dumps(j)}
    outcome = lambda pod: row(page, pod).locator(".outcome")  # noqa: E731
    assert outcome("ends-0").inner_text() == "pending"
    # When: the Job controller starts one and then both end, one well, one not
    stack.double.apply("jobs", "default", {**jobs["ends-0"], "status": {"active": 1, "startTime": "2026-11-26T00:00:00Z"}})
    expect(outcome("ends-0")).to_have_text("running", timeout=10_000)
    stack.double.apply("jobs", "default", {**jobs["ends-0"], "status": {"succeeded": 1, "startTime": "2026-11-26T00:00:00Z", "completionTime": "2026-11-26T00:00:42Z", "conditions": [{"type": "Complete", "status": "True"}]}})
    stack.double.apply("jobs", "default", {**jobs["ends-1"], "status": {"failed": 6, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}})
    # Then: the page shows each end as it happens
    expect(outcome("ends-0")).to_have_text("succeeded", timeout=10_000)
    expect(outcome("ends-1")).to_have_text("failed", timeout=10_000)
    assert "BackoffLimitExceeded" in row(page, "ends-1").inner_text()
    assert_not_reloaded(page)
    page.goto(stack.url + "/timeline")
    screenshot(page, "timeline")


def test_a_dead_letter_is_replayed_from_the_page_and_its_job_appears(stack: Stack, page: Any) -> None:
    # Given: an alert the API refused once for good, so it was dead-lettered
    stack.double.add_fault("POST", r"/namespaces/default/jobs$", status=422, times=1)
    stack.post([{"labels": {"alertname": "ReplayMe", "pod": "db-0"}, "startsAt": "2026-01-01T00:00:00Z"}])
    wait_for(lambda: dead_count(stack) == 1, what="the dead letter")
    assert stack.jobs("ReplayMe") == []
    # When: an operator selects it, replays it and confirms
    page.goto(stack.url + "/dead-letters?fresh=1")
    dead = page.locator("table.dead tbody tr", has_text="ReplayMe")
    assert "ApiRejected" in dead.inner_text()
    screenshot(page, "dead-letters")
    dead.get_by_role("checkbox").check()
    page.get_by_role("button", name="Replay selected").click()
    assert "Replay moves these 1 dead letters" in page.locator("main").inner_text()
    screenshot(page, "confirm")
    page.get_by_role("button", name="Replay 1 dead letters").click()
    expect(page.locator("#op-text")).to_have_text(re.compile(r"^done: 1 of 1"), timeout=20_000)
    # Then: the dispatcher makes its Job, and the timeline shows it
    [job] = wait_for(lambda: stack.jobs("ReplayMe"), what="the replayed alert's Job")
    assert dead_count(stack) == 0
    page.goto(stack.url + "/timeline?alertname=ReplayMe")
    assert row(page, "ReplayMe").locator(".job bdi").inner_text(timeout=10_000) == job["metadata"]["name"]


HOSTILE = {
    "alertname": "Hostile",
    "script": "<script>window.__pwned = 1</script>",
    "attribute": '"><img src=x onerror="window.__pwned = 2">',
    "quotes": "it's \"quoted\" & 'single'",
    "rtl": "\u202eexe.txt\u202c",
    "long": "w" * 16000,
}


def assert_inert(page: Any) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.images.length") == 0
    assert page.evaluate("document.scripts.length") == 1  # the console's own file
    # A 16,000-character value does not push the page sideways
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_hostile_label_renders_as_text(stack: Stack, page: Any) -> None:
    open_live(page, stack.url + "/timeline?alertname=Hostile")
    stack.post([{"labels": HOSTILE, "startsAt": "2026-01-01T00:00:00Z"}])
    hostile = row(page, "Hostile")
    hostile.wait_for(timeout=15_000)  # arrived live, through the script's insertion
    text = hostile.inner_text()
    assert HOSTILE["script"] in text and HOSTILE["attribute"] in text and HOSTILE["quotes"] in text
    assert_inert(page)
    # The direction override stays inside its own element
    assert page.evaluate("[...document.querySelectorAll('tr.row bdi')].some(b => b.textContent === '\\u202eexe.txt\\u202c')")
    page.reload()
    assert HOSTILE["script"] in row(page, "Hostile").inner_text()
    assert_inert(page)
    # The Job it would make shows its values as text too
    message_id = hostile.get_attribute("id").removeprefix("a-")
    page.goto(f"{stack.url}/definitions/preview?id={message_id}")
    assert "window.__pwned = 1" in page.locator("pre.yaml").inner_text()
    assert_inert(page)
    assert page.errors == []


def test_an_action_without_a_csrf_token_is_refused(stack: Stack, page: Any) -> None:
    # A request with the user's credentials but no token
    response = page.request.post(stack.url + "/dead-letters/replay", form={"action": "replay", "id": "anything"})
    assert response.status == 403 and "CSRF" in response.text()
    # A form another site makes the browser send (the browser adds the credentials itself)
    evil = "http://evil.test/"
    form = f'<form id="f" method="post" action="{stack.url}/dead-letters/purge"><input name="action" value="purge"><input name="id" value="x"></form>'
    page.route(evil, lambda route: route.fulfill(content_type="text/html", body=form))
    page.goto(evil)
    with page.expect_response(lambda r: r.url.endswith("/dead-letters/purge")) as answer:
        page.evaluate("document.getElementById('f').submit()")
    assert answer.value.status == 403
    page.wait_for_load_state()
    assert "403" in page.locator("body").inner_text()
    # The token of a real page, sent from another site, is refused too
    page.goto(stack.url + "/definitions")
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    response = page.request.post(stack.url + "/dead-letters/confirm", form={"action": "purge", "id": "x", "csrf": token}, headers={"Origin": "http://evil.test"})
    assert response.status == 403


def test_read_only_mode_hides_and_refuses_actions(stack: Stack, page: Any) -> None:
    page.goto(stack.read_only_url + "/dead-letters")
    assert "read-only" in page.locator("header").inner_text()
    assert page.get_by_role("button", name="Replay selected").count() == 0
    assert page.get_by_role("button", name="Purge selected").count() == 0
    assert page.locator('input[name="id"]').count() == 0
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    for path, action in (("confirm", "replay"), ("replay", "replay"), ("purge", "purge")):
        response = page.request.post(f"{stack.read_only_url}/dead-letters/{path}", form={"action": action, "id": "x", "csrf": token})
        assert response.status == 403 and "read-only" in response.text(), path


def test_screenshots_of_the_definitions_and_health(stack: Stack, page: Any) -> None:
    page.goto(stack.url + "/definitions")
    table = page.locator("table.definitions").inner_text()
    assert "openfero-livealert-firing" in table and "pod-crashloop-restart" in table
    assert "100 %" in table or "50 %" in table  # the LiveAlert Jobs that ended
    screenshot(page, "definitions")
    live = page.locator('select[name="id"] option', has_text="LiveAlert").first.get_attribute("value")
    page.locator('select[name="id"]').select_option(live)
    page.get_by_role("button", name="Preview").first.click()
    assert "OPENFERO_POD" in page.locator("pre.yaml").inner_text()
    page.locator("#preview").scroll_into_view_if_needed()
    screenshot(page, "preview")
    page.goto(stack.url + "/health")
    text = page.locator("main").inner_text()
    assert "connected" in text and "v1.34.0-double" in text
    assert f"{stack.prefix}.work" in text
    screenshot(page, "health")
