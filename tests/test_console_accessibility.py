"""The console's accessibility, checked in Debian's chromium on every page, with the keyboard and on a laptop.

Each page is checked with axe-core (WCAG 2.1 A and AA and axe's best
practices; pinned in tests/accessibility/package-lock.json, installed by
scripts/setup with npm) and with the console's own checks
(tests/accessibility/checks.js): accessible names of controls, buttons,
links and charts, one h1 and one main landmark, unique ids, and 4.5:1 for
every visible text. The Tab key walks every page, each stop showing its
focus, and a dead letter is replayed with the keyboard alone. At 1366x768
and at 1280x720 zoomed to 200 %, no page scrolls sideways or cuts the
console's own words. The browser context bypasses the console's
Content-Security-Policy so that these scripts can be injected: a test
setting only, the console's answers are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ROOT, wait_for
from tests.console_browser import LAPTOP, PASSWORD, USER, Stack, browser, dead_count, expect, stack

__all__ = ["browser", "stack"]  # fixtures, found by pytest in this module's namespace

pytestmark = pytest.mark.e2e

AXE = ROOT / "tests" / "accessibility" / "node_modules" / "axe-core" / "axe.min.js"
CHECKS = (ROOT / "tests" / "accessibility" / "checks.js").read_text()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
# 200 % zoom on a 1280x720 screen: the page lays out in 640x360 CSS pixels, drawn at twice the density.
ZOOMED = {"viewport": {"width": 640, "height": 360}, "device_scale_factor": 2}
PAGES = ["timeline", "definitions", "preview", "dead-letters", "confirm", "operation", "health"]
# More than five labels, so that its row folds the rest into a <details>.
HOSTILE = {
    "alertname": "Hostile",
    "script": "<script>window.__pwned = 1</script>",
    "attribute": '"><img src=x onerror="window.__pwned = 2">',
    "quotes": "it's \"quoted\" & 'single'",
    "rtl": "\u202eexe.txt\u202c",
    "long": "w" * 16000,
    "namespace": "shop",
}


@contextmanager
def browsing(browser: Any, viewport: dict[str, int] = LAPTOP, device_scale_factor: float = 1) -> Iterator[Any]:
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}: scripts/setup installs it with npm (scripts/system-packages installs npm)", pytrace=False)
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD}, viewport=viewport, device_scale_factor=device_scale_factor, bypass_csp=True
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def dead_letter_ids(page: Any, url: str) -> set[str]:
    page.goto(url + "/dead-letters?fresh=1")
    return {i.removeprefix("d-") for i in page.locator("table.dead tbody tr.row").evaluate_all("rows => rows.map(r => r.id)")}


def make_dead_letter(stack: Stack, page: Any, pod: str) -> str:
    """One alert the API refuses for good, so it is dead-lettered; its message id."""
    before = dead_letter_ids(page, stack.url)
    count = dead_count(stack)
    stack.double.add_fault("POST", r"/namespaces/default/jobs$", status=422, times=1)
    stack.post([{"labels": {"alertname": "ReplayMe", "pod": pod}, "startsAt": "2026-01-01T00:00:00Z"}])
    wait_for(lambda: dead_count(stack) == count + 1, what=f"the dead letter of {pod}")
    [made] = wait_for(lambda: dead_letter_ids(page, stack.url) - before, what="the dead letter on the page")
    return made


@dataclass
class Site:
    stack: Stack
    hostile_id: str
    dead_letter_id: str
    operation_url: str


@pytest.fixture(scope="module")
def site(stack: Stack, browser: Any) -> Site:
    """The timeline with rows (a hostile label among them), a dead letter, and a replay that ran."""
    stack.post([{"labels": {"alertname": "LiveAlert", "pod": f"web-{i}", "namespace": "shop"}, "startsAt": "2026-01-01T00:00:00Z"} for i in range(3)])
    stack.post([{"labels": HOSTILE, "startsAt": "2026-01-01T00:00:00Z"}])
    wait_for(lambda: len(stack.jobs("LiveAlert")) == 3 and len(stack.jobs("Hostile")) == 1, what="the Jobs of the alerts")
    with browsing(browser) as page:
        page.goto(stack.url + "/timeline?alertname=Hostile")
        hostile_id = page.locator("tbody#rows tr.row").first.get_attribute("id").removeprefix("a-")
        replayed = make_dead_letter(stack, page, "replayed")
        page.locator(f'input[name="id"][value="{replayed}"]').check()
        page.get_by_role("button", name="Replay selected").click()
        page.get_by_role("button", name="Replay 1 dead letters").click()
        expect(page.locator("#op-text")).to_have_text(re.compile(r"^done: 1 of 1"), timeout=20_000)
        operation_url = page.url
        kept = make_dead_letter(stack, page, "kept")
    return Site(stack, hostile_id, kept, operation_url)


def visit(page: Any, site: Site, name: str) -> None:
    url = site.stack.url
    if name == "timeline":
        page.goto(url + "/timeline")
        page.wait_for_selector("body[data-live]", timeout=10_000)
        assert page.locator("tbody#rows tr.row", has_text="Hostile").locator("details summary").count() == 1
    elif name == "preview":
        page.goto(f"{url}/definitions/preview?id={site.hostile_id}")
        assert "window.__pwned = 1" in page.locator("pre.yaml").inner_text()
    elif name in ("dead-letters", "confirm"):
        page.goto(url + "/dead-letters?fresh=1")
        assert page.locator(f'input[name="id"][value="{site.dead_letter_id}"]').count() == 1
        if name == "confirm":
            page.locator(f'input[name="id"][value="{site.dead_letter_id}"]').check()
            page.get_by_role("button", name="Replay selected").click()
            assert "Replay moves these 1 dead letters" in page.locator("main").inner_text()
    elif name == "operation":
        page.goto(site.operation_url)
        expect(page.locator("#op-text")).to_have_text(re.compile(r"^done: 1 of 1"))
    else:
        page.goto(f"{url}/{name}")


def run(page: Any, check: str) -> Any:
    return page.evaluate(f"({CHECKS}).{check}()")


def axe_violations(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("options => axe.run(document, options)", {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    return [f"{v['id']} ({v['help']}): {', '.join(' '.join(n['target']) for n in v['nodes'])}" for v in results["violations"]]


def sideways(page: Any) -> str | None:
    """None when the page does not scroll sideways, else how wide it is and the elements that stick out."""
    return page.evaluate(
        f"""() => {{
          const root = document.documentElement;
          if (root.scrollWidth <= root.clientWidth) return null;
          const wide = [...document.body.querySelectorAll("*")].filter((e) => e.getBoundingClientRect().right > root.clientWidth + 1);
          const last = wide.filter((e) => !wide.some((w) => w !== e && e.contains(w)));
          return `${{root.scrollWidth}} px wide in ${{root.clientWidth}}: ` + last.slice(0, 5).map((e) => ({CHECKS}).selector(e)).join(", ");
        }}"""
    )


# -- every page ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_every_page_has_names_landmarks_unique_ids_and_contrast(site: Site, browser: Any, name: str) -> None:
    with browsing(browser) as page:
        visit(page, site, name)
        problems = run(page, "structure") + run(page, "contrast") + axe_violations(page)
        assert problems == [], f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("screen", ["1366x768", "1280x720 at 200 %"])
def test_no_page_scrolls_sideways_or_cuts_its_words_on_a_laptop(site: Site, browser: Any, screen: str) -> None:
    size = {"viewport": LAPTOP} if screen == "1366x768" else ZOOMED
    with browsing(browser, **size) as page:
        wide, cut = {}, {}
        for name in PAGES:
            visit(page, site, name)
            wide[name] = sideways(page)
            cut[name] = run(page, "brokenWords")
        assert wide == dict.fromkeys(PAGES), wide
        assert cut == {name: [] for name in PAGES}, cut


# -- the keyboard ----------------------------------------------------------------------------------


def tab_to(page: Any, selector: str, *, backwards: bool = False, presses: int = 60) -> list[str]:
    """Press Tab (Shift+Tab) until ``selector`` has the focus; the elements passed, each with a visible focus."""
    passed: list[str] = []
    target = page.locator(selector)
    for _ in range(presses):
        if target.evaluate("e => e === document.activeElement"):
            return passed
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focus = run(page, "focus")
        assert focus["problem"] is None, f"{focus['element']}: {focus['problem']}"
        passed.append(focus["element"])
    raise AssertionError(f"{selector} not reached in {presses} presses of Tab; passed {passed}")


@pytest.mark.parametrize("name", PAGES)
def test_every_element_the_tab_key_reaches_shows_its_focus(site: Site, browser: Any, name: str) -> None:
    with browsing(browser) as page:
        visit(page, site, name)
        reached: list[str] = []
        for _ in range(300):
            page.keyboard.press("Tab")
            focus = run(page, "focus")
            if focus["element"] == "body":
                continue  # the focus left the page, to come back at its top
            if focus["element"] in reached:
                break  # round the whole page
            assert focus["problem"] is None, f"{name}: {focus['element']}: {focus['problem']}"
            reached.append(focus["element"])
        else:
            raise AssertionError(f"{name}: the Tab key never came round; reached {reached}")
        assert "html > body > a.skip" in reached and len(reached) >= 5, reached


def test_the_skip_link_comes_first_and_moves_the_focus_to_main(site: Site, browser: Any) -> None:
    with browsing(browser) as page:
        visit(page, site, "timeline")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        focus = run(page, "focus")
        assert focus["problem"] is None, focus
        page.keyboard.press("Enter")
        assert run(page, "focus") == {"element": "main#main", "problem": None}
        # The next Tab continues inside main: the filters, not the header's links
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('main') !== null")


def test_a_dead_letter_is_replayed_with_the_keyboard_alone(site: Site, browser: Any) -> None:
    stack = site.stack
    with browsing(browser) as page:
        dead = make_dead_letter(stack, page, "keyboard")
        jobs = len(stack.jobs("ReplayMe"))
        page.goto(stack.url + "/dead-letters?fresh=1")
        # When: Tab to its checkbox, Space, back to "Replay selected", Enter, then Enter on the confirmation
        tab_to(page, f'input[name="id"][value="{dead}"]')
        page.keyboard.press("Space")
        assert page.locator(f'input[name="id"][value="{dead}"]').is_checked()
        tab_to(page, 'button:text-is("Replay selected")', backwards=True)
        page.keyboard.press("Enter")
        page.wait_for_url("**/dead-letters/confirm")
        tab_to(page, 'button:text-is("Replay 1 dead letters")')
        page.keyboard.press("Enter")
        # Then: the replay completes and the dispatcher makes the alert's Job
        page.wait_for_url("**/operations/*")
        expect(page.locator("#op-text")).to_have_text(re.compile(r"^done: 1 of 1"), timeout=20_000)
        wait_for(lambda: len(stack.jobs("ReplayMe")) == jobs + 1, what="the replayed alert's Job")
        assert dead not in dead_letter_ids(page, stack.url)


# -- the checks themselves -------------------------------------------------------------------------

FLAWED = """<!doctype html><html><head><style>
  .faint { color: #999; } .dark { background: #1b1f24; } .dark span { color: #3b4450; }
  input::placeholder { color: #bbb; } select { color: #aaa; } #bare:focus { outline: none; }
  .narrow { width: 40px; table-layout: fixed; } .narrow th { overflow-wrap: anywhere; }
</style></head><body>
  <h1>One</h1><h1>Two</h1>
  <p class="faint">grey on white</p><div class="dark"><span>dark on dark</span></div>
  <input id="twice" placeholder="faint"><select id="twice"></select>
  <button id="bare"></button><a href="/x"></a><svg viewBox="0 0 1 1"></svg>
  <div class="wide" style="width: 3000px">wide</div>
  <table class="narrow"><tr><th>Unacknowledged</th></tr></table>
</body></html>"""


def test_the_checks_report_each_flaw_by_selector(browser: Any) -> None:
    with browsing(browser) as page:
        page.set_content(FLAWED)
        problems = "\n".join(run(page, "structure") + run(page, "contrast"))
        for expected in (
            "html: no lang", "2 h1 elements", "0 main landmarks", "#twice: the id is used 2 times",
            "input#twice: a form control without", "select#twice: a form control without",
            "button#bare: a button without", "body > a: a link without", "svg: an SVG without",
            "p.faint: text contrast 2.85:1", "div.dark:nth-of-type(1) > span: text contrast 1.68:1", "input#twice: placeholder contrast", "select#twice: text contrast",
        ):
            assert expected in problems, f"{expected!r} not in:\n{problems}"
        page.focus("#bare")
        assert run(page, "focus") == {"element": "button#bare", "problem": "no outline and no box-shadow"}
        [cut] = run(page, "brokenWords")
        assert cut.startswith("table.narrow > tbody > tr > th: \"Unacknowledged\" broken over"), cut
        assert sideways(page).startswith("3008 px wide in 1366: html > body > div.wide")
        assert {v.split(" ")[0] for v in axe_violations(page)} >= {"html-has-lang", "button-name", "link-name", "color-contrast", "landmark-one-main"}
