"""The UI end to end in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright).

The real stack runs behind the page: model server and API on free loopback ports. The browser may only
talk to the API (any other request is recorded and aborted: the page must work offline, no CDN).
A screenshot of each run is kept in ``tests/artifacts/`` (git-ignored).

Without Playwright or Chromium the tests are skipped locally; with ``SLIDES_TEST_REQUIRED=1`` or
``BROWSER_TEST_REQUIRED=1`` (CI sets the first) the skip is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
import requests
from model_fixtures import exported_versions

from recsys_workshop.api import local_stack

pytestmark = [pytest.mark.browser, pytest.mark.tf, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _require_browser() -> None:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package")
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM)")
    if missing:
        message = "the UI browser tests need " + " and ".join(missing)
        if "1" in (os.environ.get("SLIDES_TEST_REQUIRED"), os.environ.get("BROWSER_TEST_REQUIRED")):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _require_browser()
    model_dir = exported_versions(tmp_path_factory.mktemp("models"), n_versions=1)
    database = tmp_path_factory.mktemp("state") / "api.db"
    with local_stack(model_dir, env={"RECSYS_DATABASE_URL": f"sqlite:///{database}"}) as running:
        yield running


class Page:
    """A fresh browser page that may only reach ``allowed``; other requests are recorded and aborted."""

    def __init__(self, browser, allowed: str):
        self.allowed, self.blocked, self.errors = allowed, [], []
        self.context = browser.new_context(viewport={"width": 1100, "height": 1400})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route):
        if route.request.url.startswith(self.allowed):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


@pytest.fixture(scope="module")
def browser(stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, stack):
    opened = Page(browser, stack.api_url + "/")
    yield opened
    opened.context.close()


def _feedback_count(stack, action: str) -> float:
    text = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    sample = rf'^recsys_api_feedback_total\{{action="{action}",[^}}]*\}} (\S+)$'
    return sum(float(v) for v in re.findall(sample, text, re.M))


def test_pick_a_user_see_recommendations_and_like_one(stack, page, ml100k):
    from playwright.sync_api import expect

    titles = set(ml100k.items["title"])
    p = page.page
    p.goto(stack.ui_url)
    expect(p.locator("h1")).to_have_text("Movie recommendations")
    p.fill("#user-id", "196")
    p.click("#load-user")
    rows = p.locator("#recommendations li")
    expect(rows).to_have_count(10, timeout=20_000)
    shown = [t.strip() for t in p.locator("#recommendations .title").all_inner_texts()]
    assert set(shown) <= titles and len(set(shown)) == 10
    expect(p.locator("#meta")).to_contain_text("source: model")
    assert any(r.startswith("because you liked ") for r in p.locator("#recommendations .reason").all_inner_texts())
    expect(p.locator("#history li").first).not_to_be_empty()

    before = _feedback_count(stack, "like")
    first = rows.first
    item_id = int(first.get_attribute("data-item-id"))
    first.locator("button.like").click()
    expect(p.locator("#status")).to_contain_text(f"like recorded for film {item_id}")
    expect(first.locator("button.like")).to_be_disabled()
    assert _feedback_count(stack, "like") == before + 1
    events = requests.get(f"{stack.api_url}/feedback", params={"user_id": 196}, headers=stack.admin_headers(),
                          timeout=10).json()["events"]
    assert (events[-1]["item_id"], events[-1]["action"], events[-1]["arm"]) == (item_id, "like", "latest")

    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "ui_recommendations.png"), full_page=True)
    assert (ARTIFACTS / "ui_recommendations.png").stat().st_size > 10_000
    assert not page.blocked, f"the page tried to reach other hosts: {page.blocked}"
    assert not page.errors, page.errors


def test_start_as_a_new_user(stack, page):
    from playwright.sync_api import expect

    p = page.page
    p.goto(stack.ui_url)
    p.click("#new-user-box summary")
    p.fill("#search", "star wars")
    chip = p.locator("#search-results li", has_text="Star Wars (1977)")
    expect(chip).to_have_count(1, timeout=10_000)
    chip.click()
    expect(p.locator("#picked")).to_contain_text("Star Wars (1977)")
    p.click("#create-user")
    expect(p.locator("#recommendations li")).to_have_count(10, timeout=20_000)
    expect(p.locator("#meta")).to_contain_text("fallback because: new_user")
    expect(p.locator("#history")).to_contain_text("Star Wars (1977)")
    assert "Star Wars (1977)" not in p.locator("#recommendations .title").all_inner_texts()
    expect(p.locator("#recommendations .reason").first).to_have_text("because you liked Star Wars (1977)")
    p.screenshot(path=str(ARTIFACTS / "ui_new_user.png"), full_page=True)
    assert not page.blocked and not page.errors, (page.blocked, page.errors)


def test_an_unknown_user_gets_a_clear_message(stack, page):
    from playwright.sync_api import expect

    p = page.page
    p.goto(stack.ui_url)
    p.fill("#user-id", "99999")
    p.click("#load-user")
    expect(p.locator("#status")).to_contain_text("unknown user 99999")
    expect(p.locator("#result")).to_be_hidden()
