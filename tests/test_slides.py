"""The instructor deck (``slides/``): the source is complete, the build makes one self-contained HTML file,
the deck presents offline in headless Chromium, and the PDF handout exports.

The browser tests build the deck once (``slides/build.py --pdf`` into a temporary folder: figures are
regenerated from the workshop's code, so MovieLens must be available) and open it through Playwright with
Debian's Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``) and every non-``file:`` request blocked.
They need ``playwright`` (Python), Chromium and, on the first build, ``npm``: without them they are
skipped, unless ``SLIDES_TEST_REQUIRED=1`` (as in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SLIDES = REPO / "slides"
DECK = SLIDES / "deck.md"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTH, HEIGHT = 1280, 720
# Nothing on a slide smaller than this, in CSS px of the 1280x720 slide (what reaches the back row of a room):
# body text is 30 px, so tables, code and captions may shrink to two thirds of it, not further.
MIN_FONT_PX = 20
# The smallest rendered text of the current slide (speaker notes aside): its size and the first few words.
SMALLEST_TEXT = """() => {
    const slide = Reveal.getCurrentSlide();
    const walker = document.createTreeWalker(slide, NodeFilter.SHOW_TEXT);
    let size = Infinity, text = '';
    while (walker.nextNode()) {
        const node = walker.currentNode, element = node.parentElement;
        if (!node.textContent.trim() || element.closest('aside.notes') || !element.getClientRects().length) continue;
        const px = parseFloat(getComputedStyle(element).fontSize);
        if (px < size) { size = px; text = node.textContent.trim().slice(0, 40); }
    }
    return {size, text};
}"""
LABS = [f"{n:02d}" for n in range(14)]
# The figures that are PNG screenshots the build takes of running software (deck_ui.py, deck_locust.py).
SCREENSHOTS = ("ui", "locust")


# --------------------------------------------------------------------------------------------------
# The source, read independently of the build
# --------------------------------------------------------------------------------------------------


def source_slides() -> list[str]:
    """deck.md cut on lines that are exactly ``---``, except inside fenced code blocks."""
    slides, current, fence = [], [], None
    for line in DECK.read_text(encoding="utf-8").splitlines():
        marker = re.match(r"^\s*(`{3,}|~{3,})", line)
        if marker and (fence is None or marker.group(1)[0] == fence):
            fence = None if fence else marker.group(1)[0]
        if fence is None and line.rstrip() == "---":
            slides.append("\n".join(current))
            current = []
        else:
            current.append(line)
    slides.append("\n".join(current))
    return slides


def notes_of(slide: str) -> str:
    match = re.search(r"^Note:(.*)", slide, re.M | re.S)
    return match.group(1).strip() if match else ""


def test_deck_has_a_sensible_size():
    assert 40 <= len(source_slides()) <= 71


def test_every_slide_has_speaker_notes():
    missing = [i for i, slide in enumerate(source_slides(), start=1) if len(notes_of(slide)) < 40]
    assert not missing, f"slides without (real) speaker notes: {missing}"


def test_every_lab_has_a_pointer_in_order():
    pointers = re.findall(r"^\{\{lab:(\d\d)\|", DECK.read_text(encoding="utf-8"), re.M)
    assert pointers == LABS, "each section ends with its lab: 00 to 13, in order, once each"


def test_every_lab_slide_gives_the_labs_time_in_its_notes():
    """Issue 15: each hand-over slide's notes say how long the lab takes: its source's Time line."""
    for slide in source_slides():
        if match := re.search(r"^\{\{lab:(\d\d)\|", slide, re.M):
            source = next((REPO / "source").glob(f"{match[1]}_*.py")).read_text(encoding="utf-8")
            minutes = re.search(r"^# \*\*Time:\*\* about (\d+) minutes", source, re.M)[1]
            assert f"Time: {minutes} min for the lab." in notes_of(slide), f"lab {match[1]}: notes without its Time"


def test_deck_covers_the_workshop():
    text = DECK.read_text(encoding="utf-8").lower()
    topics = [
        "novelty", "serendipity", "diversity", "business objective", "content-based", "explicit", "implicit",
        "latent factors", "cold start", "hybrid", "deep mf", "metadata", "triplet", "ml platform", "container",
        "kubernetes", "kubeflow", "training at scale", "grid", "random", "bayesian", "pipeline", "versioning",
        "rollback", "a/b", "bandit", "api layer", "reference architecture", "argo cd", "gitops", "load test",
        "mlflow", "sagemaker", "vertex ai", "metaflow", "ray", "bentoml", "seldon", "tf serving", "next steps",
    ]  # fmt: skip
    missing = [topic for topic in topics if topic not in text]
    assert not missing, f"deck.md does not mention {missing}"


def test_figures_are_generated_not_pasted():
    text = DECK.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert images, "the deck has charts"
    screenshots = [f"figures/{name}.png" for name in SCREENSHOTS]
    assert all(src.startswith("figures/") and src.endswith(".svg") for src in images if src not in screenshots), images
    for wanted in ("long_tail", "item_factors", "model_comparison", "load_test"):
        assert f"figures/{wanted}.svg" in images
    assert "figures/ui.png" in images, "the UI, screenshotted by the build from the running stack (deck_ui.py)"
    assert "figures/locust.png" in images, "Locust's web UI, screenshotted by the build in a load test (deck_locust.py)"
    assert not re.search(r"\]\((?:https?:)?//", text), "no links or images on the network"


def _deck_loadtest():
    """``slides/deck_loadtest.py``, imported as the build imports it (``slides/`` on the path)."""
    if str(SLIDES) not in sys.path:
        sys.path.insert(0, str(SLIDES))
    import deck_loadtest

    return deck_loadtest


def _steps_csv(path: Path, rows: list[tuple[int, int, int, float, float]]) -> None:
    """A step-load result: (users, requests, failures, rps, p95_ms) per step, 15 s each."""
    lines = ["users,seconds,requests,failures,rps,p50_ms,p95_ms,p99_ms,fallbacks"]
    lines += [f"{u},15,{n},{f},{rps},{p95 / 3:g},{p95},{p95 * 2},{f}" for u, n, f, rps, p95 in rows]
    path.write_text("\n".join(lines) + "\n")


def test_load_test_chart_draws_the_step_run_and_waits_for_one(tmp_path, monkeypatch):
    module = _deck_loadtest()
    import deck_figures

    monkeypatch.setattr(module, "BENCH_RESULTS", tmp_path)
    context = deck_figures.Context(tmp_path / "figures", log=lambda _: None)
    pending = module.load_test(context)
    assert isinstance(pending, deck_figures.Pending) and "python -m bench.serving_steps" in pending.message
    rows = [(50, 750, 0, 50.0, 30), (100, 1500, 0, 100.0, 60), (150, 1800, 0, 120.0, 400), (200, 1800, 90, 120.0, 9e3)]
    _steps_csv(tmp_path / "serving-steps_steps.csv", rows)
    think = {"think_min_s": 0.5, "think_max_s": 2.0}
    records = [{"metric": m, "value": v, "date": "2026-01-02T03:04:05Z", "commit": "0123456789ab-dirty"}
               for m, v in think.items()]  # fmt: skip
    (tmp_path / "serving-steps.json").write_text(json.dumps(records))
    steps, knee, meta = module.read_run()
    assert (knee.users, knee.rps, knee.first_miss_users) == (100, 100.0, 150), "p95 400 ms misses the 100 ms SLO"
    assert steps["failures_per_s"].tolist() == [0, 0, 0, 6] and meta["date"] == "2026-01-02"
    assert module._think_time(meta) == "think time 0.5-2 s" and module._think_time({}) == "think time not recorded"
    figure = module.load_test(context)
    assert isinstance(figure, deck_figures.Figure) and "(2026-01-02, commit 0123456-dirty)" in figure.source
    assert figure.path.name == "load_test.svg" and figure.path.stat().st_size > 20_000


def _deck_locust():
    """``slides/deck_locust.py``, imported as the build imports it (``slides/`` on the path)."""
    if str(SLIDES) not in sys.path:
        sys.path.insert(0, str(SLIDES))
    import deck_locust

    return deck_locust


def test_locust_screenshot_waits_for_chromium_and_load_tests_loopback_only(tmp_path, monkeypatch):
    module = _deck_locust()
    import deck_figures
    import deck_ui

    monkeypatch.setattr(deck_ui, "find_chromium", lambda: None)
    pending = module.locust_screenshot(deck_figures.Context(tmp_path / "figures", log=lambda _: None))
    assert isinstance(pending, deck_figures.Pending), "no Chromium: the slide says what to install"
    assert "Chromium" in pending.message and "playwright" in pending.message
    log = tmp_path / "locust.log"
    with pytest.raises(ValueError, match="loopback"), module.locust_web("http://example.com:8000", log):
        pass
    assert not log.exists(), "Locust is not even started against another machine"


def test_load_test_notes_quote_the_run_the_chart_draws():
    """The speaker notes say what the committed run shows: the knee, the peak and where failures start."""
    run = _deck_loadtest().read_run()
    assert run is not None, "bench/results/serving-steps_steps.csv is missing: python -m bench.serving_steps"
    steps, knee, _ = run
    slide = next(s for s in source_slides() if "figures/load_test.svg" in s)
    notes = notes_of(slide)
    if knee.users is None:
        assert "no knee" in notes, "the notes must say that even the first step missed the SLO"
    else:
        assert f"knee at {knee.users} users" in notes and f"{knee.rps:.0f} requests/s" in notes, notes
    peak = steps.loc[steps["rps"].idxmax()]
    assert f"peak of {peak['rps']:.0f} requests/s at {int(peak['users'])} users" in notes, notes
    failing = steps.loc[steps["failures"] > 0, "users"]
    if failing.empty:
        assert "no request failed" in notes, "the notes must not promise failures the run did not have"
    else:
        assert f"failures from {int(failing.min())} users" in notes, notes


def test_serving_scale_chart_draws_the_benchmark_and_its_notes_quote_it(tmp_path, monkeypatch):
    _deck_loadtest()  # puts slides/ on the path
    import deck_figures
    import deck_scale

    slide = next(s for s in source_slides() if "figures/serving_scale.svg" in s)
    curve = deck_scale.read_curve()
    assert curve is not None, "bench/results/serving-scale.json is missing: python -m bench.serving_scale"
    largest, served = curve[("ann", "served_recall@10")][-1]
    assert largest == 1_000_000 and f"about {served:.0%} of the exact top-10" in notes_of(slide)
    monkeypatch.setattr(deck_scale, "BENCH_RESULTS", tmp_path)
    context = deck_figures.Context(tmp_path / "figures", log=lambda _: None)
    pending = deck_scale.serving_scale(context)
    assert isinstance(pending, deck_figures.Pending) and "python -m bench.serving_scale" in pending.message
    points = (("synthetic-1.7k", "exact", 1.0), ("synthetic-1m", "exact", 90.0),
              ("synthetic-1.7k", "ann", 2.0), ("synthetic-1m", "ann", 3.0))  # fmt: skip
    records = [{"dataset": d, "model": m, "metric": "p99_ms", "value": v, "date": "2026-01-02T03:04:05Z",
                "commit": "89abcdef0123"} for d, m, v in points]  # fmt: skip
    (tmp_path / "serving-scale.json").write_text(json.dumps(records))
    assert deck_scale.read_curve()[("exact", "p99_ms")] == [(1_700, 1.0), (1_000_000, 90.0)]
    figure = deck_scale.serving_scale(context)
    assert isinstance(figure, deck_figures.Figure) and "(2026-01-02, commit 89abcde)" in figure.source
    assert figure.path.name == "serving_scale.svg" and figure.path.stat().st_size > 10_000


def test_benchmark_tables_give_each_metric_one_format_and_name_columns_for_people(tmp_path, monkeypatch):
    _deck_loadtest()  # puts slides/ on the path
    import deck_figures
    import deck_tables

    monkeypatch.setattr(deck_figures, "BENCH_RESULTS", tmp_path)
    common = {"protocol": "serving-60s", "seeds": [0, 1], "commit": "0123456789ab"}
    records = [{**common, "model": "api", "metric": "requests_per_s", "value": 412.3, "std": 8.96},
               {**common, "model": "api", "metric": "p99_ms", "value": 8.5, "std": 0.7071},
               {**common, "model": "baseline", "metric": "p99_ms", "value": 12.0, "std": 1.0},
               {**common, "model": "api", "metric": "failures", "value": 0.0},
               {**common, "model": "other", "metric": "rss_mb", "value": 1.0}]  # fmt: skip
    (tmp_path / "serving.json").write_text(json.dumps(records))
    table = deck_tables.bench_serving(None)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table.html)
    assert cells[:6] == ["api", "412 ± 9", "–", "–", "8.5 ± 0.7", "0"], cells
    assert cells[6:] == ["baseline", "–", "–", "–", "12.0 ± 1.0", "–"], "one format per metric, whatever the size"
    headers = re.findall(r"<th>(.*?)</th>", table.html)
    assert headers == ["model", "requests/s", "p50 (ms)", "p95 (ms)", "p99 (ms)", "failures"], headers
    assert "other" not in cells, "a model with none of the table's metrics has no row"
    assert table.source.startswith("bench/results/serving.json · commit 0123456 · up to 2 seed(s)")
    deep = deck_tables.bench_deep(None)
    assert isinstance(deep, deck_figures.Pending), "no deep.json in this folder: a box that says how to make it"
    (tmp_path / "deep.json").write_text(json.dumps([{**common, "protocol": "ncf-loo-99", "model": "gmf",
                                                    "metric": "hr@10", "value": 0.7, "commit": "abc-dirty"}]))
    deep = deck_tables.bench_deep(None)
    assert "<th>HR@10<br>NCF leave-one-out</th>" in deep.html and "commit abc-dirty" in deep.source


def test_reveal_is_pinned_exactly():
    package = json.loads((SLIDES / "package.json").read_text())
    lock = json.loads((SLIDES / "package-lock.json").read_text())
    version = package["dependencies"]["reveal.js"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "an exact version, no range"
    assert lock["packages"]["node_modules/reveal.js"]["version"] == version


def _build_module():
    spec = importlib.util.spec_from_file_location("slides_build", SLIDES / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_build_refuses_what_would_not_present_offline():
    build = _build_module()
    assert build.external_references('<img src="data:image/png;base64,AA"><a href="#slide-2">x</a>') == []
    for page in (
        '<img src="https://example.org/a.png">',
        '<script src="//cdn.example.org/reveal.js"></script>',
        '<link rel="stylesheet" href="theme.css">',
        "<style>@import url(https://fonts.example.org/x.css);</style>",
        "<style>body { background: url(bg.png); }</style>",
    ):
        assert build.external_references(page), page
    with pytest.raises(build.BuildError, match="speaker notes"):
        build.parse_deck("## A slide\n\n- no notes\n")
    slides = build.parse_deck("# One\n\nNote:\nsay it\n\n---\n\n```yaml\n---\n```\n\nNote:\nyaml inside\n")
    assert len(slides) == 2, "a --- inside a code fence does not split slides"


def test_manifest_excerpts_follow_the_manifests():
    build = _build_module()
    excerpt = build.expand_manifest("cluster-setup/manifests/base/train-job.yaml", "kind\nmetadata.name", "test")
    assert "kind: TFJob" in excerpt and "name: recsys-train" in excerpt and "tfReplicaSpecs" not in excerpt
    with pytest.raises(build.BuildError, match="no spec.nothing"):
        build.expand_manifest("cluster-setup/manifests/base/train-job.yaml", "spec.nothing", "test")


# --------------------------------------------------------------------------------------------------
# The build and the browser
# --------------------------------------------------------------------------------------------------


def _require_tools() -> None:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package")
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM)")
    if shutil.which("npm") is None and not (SLIDES / "node_modules" / "reveal.js").is_dir():
        missing.append("npm (to install reveal.js)")
    if missing:
        message = "the slides browser tests need " + ", ".join(missing)
        if os.environ.get("SLIDES_TEST_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """slides/build.py --pdf into a fresh folder (figures regenerated), once per session."""
    _require_tools()
    out = tmp_path_factory.mktemp("slides")
    env = {**os.environ, "CHROMIUM": CHROMIUM, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(SLIDES / "build.py"), "--out", str(out), "--pdf"],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, f"build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")  # not session: one sync Playwright at a time (test_ui_browser opens its own)
def browser(built):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield instance
        instance.close()


class OfflinePage:
    """A page in a fresh context where every request that is not a local file is recorded and aborted."""

    def __init__(self, browser):
        self.network: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        self.context.route("**/*", self._route)
        self.context.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error"
                        else None)  # fmt: skip
        self.context.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url[:100]}"))
        self.context.on("page", self._watch)
        self.page = self.context.new_page()

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:", "about:")):
            route.continue_()
        else:
            self.network.append(url)
            route.abort()

    def _watch(self, page):
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def open(self, deck: Path, query: str = ""):
        self.page.goto(deck.as_uri() + query)
        self.page.wait_for_function("() => window.Reveal && Reveal.isReady()")
        return self.page

    def close(self):
        self.context.close()


def test_build_is_one_self_contained_file(built):
    page = (built / "deck.html").read_text(encoding="utf-8")
    remote = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)[^"'\s>]*""", page, re.I)
    assert not remote, f"references to the network: {remote[:5]}"
    assert not re.search(r"<link[^>]+stylesheet", page, re.I), "stylesheets are inlined"
    assert not re.search(r"@import", page), "no CSS imports"
    assert not re.findall(r"url\(\s*['\"]?(?!data:|#)", page), "CSS url() only with data: URIs"
    figures = sorted(p.name for p in (built / "figures").iterdir())
    summary = json.loads((built / "deck.json").read_text())
    generated = [name for name, status in summary["figures"].items() if status == "generated"]
    assert sorted(f"{name}.png" if name in SCREENSHOTS else f"{name}.svg" for name in generated) == figures
    assert {"long_tail", "item_factors", "model_comparison"} <= set(generated), "charts from the labs' code"
    assert "ui" in generated, "the UI screenshot, taken by the build from the running stack (CI has Chromium)"
    assert (built / "figures" / "ui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_locust_screenshot_is_taken_by_the_build_and_readable_on_its_slide(built, browser):
    """Issue: Locust's web UI, screenshotted by the build during a load test of the running stack; its
    smallest text (Locust's, zoomed) is drawn at the deck's minimum size or larger."""
    module = _deck_locust()
    summary = json.loads((built / "deck.json").read_text())
    assert summary["figures"]["locust"] == "generated", "taken by the build (CI has Chromium)"
    png = (built / "figures" / "locust.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (module.VIEWPORT["width"], module.VIEWPORT["height"])
    offline = OfflinePage(browser)
    try:
        page = offline.open(built / "deck.html")
        find = """Array.from(document.querySelectorAll('img.figure')).find(i => i.alt.startsWith("Locust's web UI"))"""
        number = int(page.evaluate(f"{find}.closest('section').id").removeprefix("slide-"))
        page.evaluate(f"Reveal.slide({number - 1})")  # on its slide: laid out as the room sees it
        page.wait_for_function(f"() => Reveal.getIndices().h === {number - 1} && {find}.complete")
        shown = page.evaluate(
            f"""() => {{
                const img = {find};
                const caption = img.nextElementSibling;
                return {{width: img.offsetWidth, natural: img.naturalWidth, caption: caption.textContent,
                         slide: img.closest('section').id}};
            }}"""
        )
    finally:
        offline.close()
    assert shown["natural"] == width
    drawn = module.SMALLEST_TEXT_PX * module.ZOOM * shown["width"] / shown["natural"]
    assert drawn >= MIN_FONT_PX, f"{shown['slide']}: Locust's smallest text drawn at {drawn:.1f} px"
    assert shown["caption"].startswith("Generated by the build: screenshot of Locust's web UI")


def test_deck_presents_offline_and_every_slide_renders(built, browser):
    expected = len(source_slides())
    summary = json.loads((built / "deck.json").read_text())
    offline = OfflinePage(browser)
    try:
        page = offline.open(built / "deck.html")
        total = page.evaluate("Reveal.getTotalSlides()")
        assert total == expected == summary["slides"], "one reveal slide per slide of deck.md"
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        broken = page.evaluate(
            "() => Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40))"
        )
        assert not broken, f"images that do not load: {broken}"
        n_figures = page.evaluate("document.querySelectorAll('img.figure').length")
        n_generated = sum(status == "generated" for status in summary["figures"].values())
        n_pending = page.evaluate("document.querySelectorAll('.pending').length")
        assert n_figures >= n_generated > 0
        assert n_pending == sum(status == "pending" for status in [*summary["figures"].values(),
                                                                  *summary["tables"].values()])  # fmt: skip
        problems = []
        for index in range(total):
            state = page.evaluate(
                """() => {
                    const slide = Reveal.getCurrentSlide();
                    const box = slide.getBoundingClientRect();
                    return {
                        h: Reveal.getIndices().h, id: slide.id, kind: slide.className,
                        visible: getComputedStyle(slide).display !== 'none' && box.width > 0 && box.height > 0,
                        text: slide.innerText.trim().length,
                        height: Math.max(slide.scrollHeight, slide.offsetHeight),
                        width: slide.scrollWidth,
                        notes: (Reveal.getSlideNotes(slide) || '').trim().length,
                        heading: (slide.querySelector('h1, h2') || {}).textContent || '',
                        clipped: Array.from(slide.querySelectorAll('pre code')).filter(
                            c => c.scrollHeight > c.clientHeight + 1 || c.scrollWidth > c.clientWidth + 1).length,
                    };
                }"""
            )
            where = f"slide {index + 1} ({state['heading'][:50]!r})"
            assert state["h"] == index and state["id"] == f"slide-{index + 1}", where
            if not state["visible"] or state["text"] == 0:
                problems.append(f"{where}: not rendered")
            if state["height"] > HEIGHT or state["width"] > WIDTH:
                problems.append(f"{where}: content {state['width']}x{state['height']} overflows {WIDTH}x{HEIGHT}")
            if state["notes"] == 0:
                problems.append(f"{where}: no speaker notes")
            if state["clipped"]:
                problems.append(f"{where}: {state['clipped']} code block(s) scroll: lines the room cannot see")
            smallest = page.evaluate(SMALLEST_TEXT)
            if smallest["size"] < MIN_FONT_PX:
                problems.append(f"{where}: {smallest['size']:.1f} px text ({smallest['text']!r}), "
                                f"below {MIN_FONT_PX} px")
            if index + 1 < total:
                page.keyboard.press("ArrowRight")
                page.wait_for_function(f"() => Reveal.getIndices().h === {index + 1}")
        assert page.evaluate("Reveal.isLastSlide()")
        assert not problems, "\n".join(problems)
        labs = page.evaluate("Array.from(document.querySelectorAll('section.lab h2')).map(h => h.textContent)")
        assert [label[4:6] for label in labs] == LABS, labs
        assert not offline.network, f"the deck tried to reach the network: {offline.network[:5]}"
        assert not offline.errors, offline.errors
    finally:
        offline.close()


def test_speaker_view_works_offline(built, browser):
    offline = OfflinePage(browser)
    try:
        page = offline.open(built / "deck.html")
        page.evaluate("Reveal.slide(5)")
        with page.expect_popup() as popup:
            page.keyboard.press("s")
        speaker = popup.value
        speaker.wait_for_function(
            "() => (document.querySelector('.speaker-controls-notes') || {innerText: ''}).innerText.length > 40"
        )
        current = next(f for f in speaker.frames if "receiver" in f.url and "postMessageEvents" in f.url)
        current.wait_for_function("() => window.Reveal && Reveal.isReady() && Reveal.getIndices().h === 5")
        assert not offline.network, offline.network[:5]
        assert not offline.errors, offline.errors
    finally:
        offline.close()


def test_pdf_handout(built):
    pdf = built / "deck.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    assert pages == len(source_slides()), "one page per slide"
