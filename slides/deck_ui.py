"""The deck's screenshot of the workshop's UI, taken by the build from the running app (never pasted).

The build exports the deck's MF model (the one its charts train) as version 1, starts the local stack on it
(``recsys_workshop.api.local_stack``: the model server and the API, two processes on loopback ports, a fresh
SQLite database), opens the API's UI page in headless Chromium (Playwright), asks for user 196's
recommendations as lab 11 does, and screenshots the page. The page may only reach the API: any other
request fails the build. Without Playwright or Chromium the slide says what to install instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = 196  # the user lab 11 and the UI test pick
# The page at 1.5 times its size in a 900 x 600 window: on the slide (at most 500 px high) its 16 px text is
# drawn at 16 x 1.5 x 500 / 600 = 20 px, the deck's minimum.
VIEWPORT = {"width": 900, "height": 600}
ZOOM = 1.5
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def find_chromium() -> str | None:
    """Chromium's path ($CHROMIUM, else the usual names on PATH), or None; the PDF export uses it too."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def browser_or_pending(what: str):
    """Chromium's path when it and Playwright are installed, else the :class:`Pending` that says so (``what``
    names the screenshot on the slide)."""
    from deck_figures import Pending

    chromium = find_chromium()
    if chromium is None or importlib.util.find_spec("playwright") is None:
        return Pending(
            f"{what} is taken by the build from the running stack: it needs Chromium "
            "(apt-get install -y chromium, or set CHROMIUM) and the playwright package (make install)."
        )
    return chromium


@contextlib.contextmanager
def deck_stack(ctx, prefix: str, env: dict[str, str] | None = None) -> Iterator:
    """The local stack (model server + API) on the deck's MF model, exported as version 1 into a scratch folder
    with a fresh SQLite database and this run's own admin token; yields ``(stack, scratch)``."""
    from recsys_workshop import export
    from recsys_workshop.api import local_stack

    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        models = Path(scratch) / "models"
        export.export_model(ctx.mf, models, metadata={"dataset": "ml-100k"})
        env = {"RECSYS_DATABASE_URL": f"sqlite:///{Path(scratch) / 'api.db'}", **(env or {})}
        token = secrets.token_urlsafe(32)  # this run's own: the stack refuses a short or missing one
        with local_stack(models, env=env, admin_token=token) as stack:
            yield stack, Path(scratch)


def ui_screenshot(ctx):
    """The UI with user 196's recommendations, from the stack running on the deck's MF model."""
    from deck_figures import Figure

    chromium = browser_or_pending("This screenshot of the UI")
    if not isinstance(chromium, str):
        return chromium
    from playwright.sync_api import sync_playwright

    path = ctx.out_dir / "ui.png"
    blocked: list[str] = []
    with deck_stack(ctx, "deck-ui-") as (stack, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            allowed = stack.api_url + "/"
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(allowed)
                          else (blocked.append(route.request.url), route.abort()))  # fmt: skip
            page = context.new_page()
            page.goto(stack.ui_url)
            page.add_style_tag(content=f"html {{ zoom: {ZOOM}; }}")
            page.fill("#user-id", str(USER))
            page.click("#load-user")
            page.locator("#recommendations li").nth(9).wait_for(timeout=30_000)
            # the model's answer, not the popular fallback the API gives when the model is slow
            page.wait_for_function("document.querySelector('#meta').textContent.includes('source: model')",
                                   timeout=30_000)  # fmt: skip
            # the panel with the answer at the top of the window: the list, each film's reason and button
            page.evaluate("document.querySelector('#recommendations').closest('section').scrollIntoView()")
            page.screenshot(path=str(path))
        finally:
            browser.close()
    if blocked:
        raise RuntimeError(f"the UI page tried to reach other hosts: {blocked[:3]}")
    ctx.log(f"  screenshot of the UI for user {USER} ({path.stat().st_size // 1024} KB)")
    return Figure(path, f"screenshot of the running UI (model server + API on the deck's MF model), user {USER}")
