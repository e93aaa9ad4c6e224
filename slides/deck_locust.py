"""The deck's screenshot of Locust's web UI during a short load test of the local stack, taken by the build.

The build exports the deck's MF model as version 1, starts the local stack on it (``recsys_workshop.api.
local_stack``, as ``deck_ui.py`` does), starts Locust with its web UI on a loopback port against the stack's
API (the workshop's locustfile, ``recsys_workshop.loadtest.LOCUSTFILE``: its simulated users and their think
time; the host passes ``loadtest.check_host``, loopback only) with ``--autostart``, lets :data:`USERS` users
run for :data:`LOAD_SECONDS` seconds, then opens Locust's Statistics tab in headless Chromium (Playwright)
and screenshots it, the test still running. The page may only reach Locust's own web server: any other
request fails the build. Locust and the stack are stopped whatever happens. Without Playwright or Chromium
the slide says what to install instead.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

USERS = 10
SPAWN_RATE = 10  # all of them in the first second
LOAD_SECONDS = 12  # of load before the screenshot: a hundred-odd requests, every request type a few times
MAX_RUN_SECONDS = 300  # Locust's own bound (--run-time), should the build die before it stops Locust
READY_SECONDS = 120  # importing Locust and loading MovieLens in its process
# One client sends every request: the API's per-client write limits would answer 429 (as in lab 12 and
# bench/serving_steps.py, the load test switches them off).
STACK_ENV = {"RECSYS_FEEDBACK_RATE": "off", "RECSYS_USERS_RATE": "off"}
# The page at 1.45 times its size in a 1150 x 500 window, drawn unscaled on the slide (at most 500 px high):
# Locust's smallest text (14 px: the table, the tabs, the header's values) is drawn at 14 x 1.45 = 20.3 px,
# the deck's minimum. To fit the window at that size, the table shows the columns the slide talks about
# (chosen with Locust's own column picker), its rows are tightened, and the header's buttons (edit, stop,
# reset, theme) and the column picker are hidden: every number shown is Locust's.
VIEWPORT = {"width": 1150, "height": 500}
ZOOM = 1.45
SMALLEST_TEXT_PX = 14
HIDDEN_COLUMNS = ("Average (ms)", "Min (ms)", "Max (ms)", "Average size (bytes)", "Current RPS", "Current Failures/s")
TIGHTEN = """
.MuiTableCell-root { padding: 4px 10px; white-space: nowrap; }
div:has(> button.MuiButton-outlined) { display: none; }
header .MuiButton-root, header .MuiIconButton-root { display: none; }
"""


@contextlib.contextmanager
def locust_web(host: str, log_path: Path) -> Iterator[str]:
    """Locust with its web UI on a free loopback port, already swarming ``host`` with :data:`USERS` users;
    yields the web UI's URL once every user runs; stops Locust (SIGINT, then SIGKILL) on exit."""
    from recsys_workshop import loadtest
    from recsys_workshop.procs import free_port, stop_process, tail, wait_ready

    host = loadtest.check_host(host)
    port = free_port()
    command = [sys.executable, "-m", "locust", "-f", str(loadtest.LOCUSTFILE), "--host", host,
               "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart", "--users", str(USERS),
               "--spawn-rate", str(SPAWN_RATE), "--run-time", f"{MAX_RUN_SECONDS}s"]  # fmt: skip
    web = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(web + "/", timeout=READY_SECONDS, process=process, log_path=log_path, name="Locust's web UI")
        deadline = time.monotonic() + READY_SECONDS
        while (stats := _stats(web)).get("state") != "running" or stats.get("user_count") != USERS:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Locust did not start {USERS} users ({stats.get('state')}):\n{tail(log_path)}")
            time.sleep(0.2)  # polling Locust's own state, not a guess at how long it takes
        yield web
    finally:
        stop_process(process, timeout=10, sig=signal.SIGINT)


def _stats(web: str) -> dict:
    from recsys_workshop.procs import http_get

    status, body = http_get(web + "/stats/requests")
    return json.loads(body) if status == 200 else {}


def _shoot(web: str, chromium: str, path: Path) -> dict:
    """Locust's Statistics tab after :data:`LOAD_SECONDS` of load, into ``path``; Locust's totals then."""
    from deck_ui import BROWSER_ARGS
    from playwright.sync_api import sync_playwright

    time.sleep(LOAD_SECONDS)  # the length of the load test, not a synchronisation
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
            blocked: list[str] = []
            allowed = web + "/"
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(allowed)
                          else (blocked.append(route.request.url), route.abort()))  # fmt: skip
            page = context.new_page()
            page.goto(web + "/")
            page.get_by_role("tab", name="Statistics").click()
            # Locust's table, once it holds numbers (the page polls /stats/requests every 2 s)
            page.get_by_role("cell", name="Aggregated").wait_for(timeout=30_000)
            page.locator("button.MuiButton-outlined").click()  # the column picker (an icon, no label)
            for column in HIDDEN_COLUMNS:
                page.get_by_label(column, exact=True).uncheck()
            page.keyboard.press("Escape")
            page.locator(".MuiPopover-root").wait_for(state="detached")
            page.add_style_tag(content=f"html {{ zoom: {ZOOM}; }}{TIGHTEN}")
            page.get_by_role("columnheader", name="95%ile (ms)").wait_for()
            page.screenshot(path=str(path))
        finally:
            browser.close()
    if blocked:
        raise RuntimeError(f"Locust's web UI tried to reach other hosts: {blocked[:3]}")
    return _stats(web)


def locust_screenshot(ctx):
    """Locust's web UI, :data:`USERS` users into a load test of the stack running on the deck's MF model."""
    from deck_figures import Figure
    from deck_ui import browser_or_pending, deck_stack

    chromium = browser_or_pending("This screenshot of Locust's web UI during a load test")
    if not isinstance(chromium, str):
        return chromium
    path = ctx.out_dir / "locust.png"
    with deck_stack(ctx, "deck-locust-", STACK_ENV) as (stack, scratch), \
            locust_web(stack.api_url, scratch / "locust.log") as web:  # fmt: skip
        stats = _shoot(web, chromium, path)
    total = next((s for s in stats.get("stats", []) if s.get("name") == "Aggregated"), {})
    ctx.log(f"  screenshot of Locust: {total.get('num_requests', '?')} requests, {total.get('num_failures', '?')} "
            f"failures ({path.stat().st_size // 1024} KB)")  # fmt: skip
    return Figure(
        path,
        f"screenshot of Locust's web UI, {LOAD_SECONDS} s into a load test of the local stack (API + model server, "
        f"the deck's MF model) by {USERS} of the workshop's simulated users (recsys_workshop/loadtest/locustfile.py)",
    )
