#!/usr/bin/env python
"""Build the instructor deck: ``slides/deck.md`` -> ``slides/build/deck.html``, one self-contained file.

    .venv/bin/python slides/build.py            # figures + HTML (installs reveal.js with `npm ci` if needed)
    .venv/bin/python slides/build.py --pdf      # ... and build/deck.pdf for handouts (headless Chromium)

What it does:

1. **Figures.** Regenerates every chart the deck references (``![alt](figures/<name>.svg)``; the UI's
   screenshot, ``figures/ui.png``, and Locust's, ``figures/locust.png``, are taken from the running stack by
   ``deck_ui.py`` and ``deck_locust.py``) and every generated table (``{{table:<name>}}``) from the
   workshop's own code (see ``deck_figures.py``) into ``<out>/figures/``. A figure whose input does not
   exist yet says so on its slide instead.
2. **Slides.** Splits ``deck.md`` on lines ``---`` (outside code fences), takes everything after a line
   starting ``Note:`` as the speaker notes, reads ``<!-- .slide: class="..." -->`` attributes, expands the
   directives ``{{lab:NN|title}}`` (the lab's title, notebook, duration and goals, read from
   ``source/NN_*.py``) and ``{{manifest <path>`` + key paths + ``}}`` (an excerpt of a real manifest), and
   renders Markdown with markdown-it and Pygments (no client-side Markdown or highlighting).
3. **One file.** Inlines reveal.js (pinned in ``package.json`` / ``package-lock.json``), its notes plugin,
   the theme with its embedded fonts, and every image (base64 ``data:`` URIs) into ``deck.html``, then
   checks that no ``src``/``href``/CSS ``url()`` points anywhere but a ``data:`` URI or the page itself.

The deck presents offline: open ``deck.html`` in a browser, press ``S`` for the speaker view (notes,
timer, next slide), ``F`` for full screen, ``Esc`` for the overview.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import json
import mimetypes
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

SLIDES = Path(__file__).resolve().parent
REPO = SLIDES.parent
DECK = SLIDES / "deck.md"
THEME_CSS = SLIDES / "theme.css"
DEFAULT_OUT = SLIDES / "build"
REVEAL_DIR = SLIDES / "node_modules" / "reveal.js"
REVEAL_ASSETS = {
    "css": ["dist/reset.css", "dist/reveal.css", "dist/theme/white.css"],
    "js": ["dist/reveal.js", "dist/plugin/notes.js"],
}
WIDTH, HEIGHT = 1280, 720
TITLE = "Deep-Learning Recommenders in Production"
PYGMENTS_STYLE = "friendly"
MAX_LAB_GOALS = 6


def _figures_module():
    """``deck_figures.py``, beside this file (and the workshop package, should it not be installed)."""
    for path in (str(REPO), str(SLIDES)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import deck_figures

    return deck_figures


class BuildError(RuntimeError):
    """The deck cannot be built as written: the message names the slide or file to fix."""


# --------------------------------------------------------------------------------------------------
# deck.md -> slides
# --------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
SLIDE_ATTRS = re.compile(r"<!--\s*\.slide:\s*(.*?)\s*-->")
ATTR = re.compile(r'([\w-]+)="([^"]*)"')
NOTE = re.compile(r"^Note:\s?(.*)$")
SLIDE_KINDS = ("title", "section", "lab")  # anything else is a content slide
KIND_ATTRS = {  # attributes every slide of a kind gets unless it sets them itself
    "section": {"data-background-color": "#17324d"},
    "title": {"data-background-color": "#17324d"},
}


@dataclasses.dataclass
class Slide:
    number: int  # 1-based, as reveal shows it
    line: int  # line of deck.md where the slide starts
    attrs: dict[str, str]
    body: str
    notes: str

    @property
    def kind(self) -> str:
        classes = self.attrs.get("class", "").split()
        return next((kind for kind in SLIDE_KINDS if kind in classes), "content")

    @property
    def where(self) -> str:
        return f"deck.md line {self.line} (slide {self.number})"


def split_slides(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each slide: split on lines that are exactly ``---`` outside code fences."""
    chunks: list[tuple[int, list[str]]] = [(1, [])]
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match and (fence is None or match.group(1)[0] == fence[0]):
            fence = None if fence else match.group(1)
        if fence is None and line.rstrip() == "---":
            chunks.append((number + 1, []))
            continue
        chunks[-1][1].append(line)
    return chunks


def parse_deck(text: str) -> list[Slide]:
    slides = []
    for number, (line, lines) in enumerate(split_slides(text), start=1):
        attrs: dict[str, str] = {}
        body: list[str] = []
        notes: list[str] | None = None
        fence: str | None = None
        for raw in lines:
            match = FENCE.match(raw)
            if match and (fence is None or match.group(1)[0] == fence[0]):
                fence = None if fence else match.group(1)
            if notes is not None:
                notes.append(raw)
                continue
            note = NOTE.match(raw) if fence is None else None
            if note:
                notes = [note.group(1)]
                continue
            attr_match = SLIDE_ATTRS.search(raw) if fence is None else None
            if attr_match:
                attrs.update(ATTR.findall(attr_match.group(1)))
                raw = SLIDE_ATTRS.sub("", raw)
                if not raw.strip():
                    continue
            body.append(raw)
        slide = Slide(number, line, attrs, "\n".join(body).strip(), "\n".join(notes or []).strip())
        if not slide.body:
            raise BuildError(f"{slide.where}: empty slide (two `---` in a row?)")
        if not slide.notes:
            raise BuildError(f"{slide.where}: no speaker notes; add a line `Note:` followed by what to say")
        slides.append(slide)
    return slides


# --------------------------------------------------------------------------------------------------
# Directives: {{table:name}}, {{lab:NN|title}}, {{manifest path ... }}
# --------------------------------------------------------------------------------------------------

TABLE_DIRECTIVE = re.compile(r"^\{\{table:([\w-]+)\}\}$", re.M)
LAB_DIRECTIVE = re.compile(r"^\{\{lab:(\d\d)\|([^}]*)\}\}$", re.M)
MANIFEST_DIRECTIVE = re.compile(r"^\{\{manifest\s+(\S+)\n(.*?)\n\}\}$", re.M | re.S)


def lab_info(number: str) -> dict | None:
    """Title, duration and goals of a lab, read from its single source ``source/NN_slug.py``."""
    sources = sorted((REPO / "source").glob(f"{number}_*.py"))
    if not sources:
        return None
    path = sources[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    info: dict = {"slug": path.stem, "title": None, "minutes": None, "goals": []}
    in_goals = False
    for line in lines:
        text = line[2:] if line.startswith("# ") else ("" if line.strip() == "#" else None)
        if text is None:
            if in_goals:
                break
            continue
        heading = re.match(rf"^# Lab {number}:\s*(.+)$", text)
        if heading and info["title"] is None:
            info["title"] = heading.group(1).strip()
        minutes = re.match(r"^\*\*Time:\*\*\s*about\s+(\d+)\s+minutes", text)
        if minutes:
            info["minutes"] = int(minutes.group(1))
        if text.strip() == "**You will**":
            in_goals = True
            continue
        if in_goals:
            if not text.strip():
                break
            if text.startswith("- "):
                info["goals"].append(text[2:].strip())
            elif info["goals"]:
                info["goals"][-1] += " " + text.strip()
    return info


def expand_lab(number: str, fallback_title: str) -> str:
    info = lab_info(number)
    if info is None:
        return (
            f"## Lab {number}: {fallback_title}\n\n"
            f'<p class="lab-meta">notebook <code>labs/{number}_*.ipynb</code>: in preparation '
            f"(this slide fills itself from <code>source/{number}_*.py</code> once the lab lands)</p>"
        )
    title = info["title"] or fallback_title
    meta = f"notebook <code>labs/{info['slug']}.ipynb</code>, completed in <code>solutions/</code>"
    if info["minutes"]:
        meta += f" · about {info['minutes']} minutes"
    goals = info["goals"][:MAX_LAB_GOALS]
    if len(info["goals"]) > MAX_LAB_GOALS:
        goals[-1] += " …"
    listing = "\n".join(f"- {goal}" for goal in goals)
    return f'## Lab {number}: {title}\n\n<p class="lab-meta">{meta}</p>\n\n{listing}'


def _yaml_path_exists(doc, path: list[str]) -> bool:
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def prune(node, paths: list[list[str]]):
    """Keep only the given key paths of a YAML document (and everything under each), in the file's order."""
    if any(not path for path in paths):
        return node
    if isinstance(node, dict):
        kept = {}
        for key, value in node.items():
            below = [path[1:] for path in paths if path[0] == str(key)]
            if below:
                kept[key] = prune(value, below)
        return kept
    if isinstance(node, list):
        return [
            prune(value, below) for i, value in enumerate(node) if (below := [p[1:] for p in paths if p[0] == str(i)])
        ]
    return node


def expand_manifest(spec: str, keys: str, where: str) -> str:
    import yaml

    path_text, _, kind = spec.partition("#")
    path = REPO / path_text
    if not path.is_file():
        raise BuildError(f"{where}: manifest {path_text} does not exist")
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    if kind:
        docs = [doc for doc in docs if doc.get("kind") == kind]
    if not docs:
        raise BuildError(f"{where}: no {kind or 'YAML'} document in {path_text}")
    paths = [line.strip().split(".") for line in keys.splitlines() if line.strip()]
    missing = [".".join(p) for p in paths if not _yaml_path_exists(docs[0], p)]
    if missing:
        raise BuildError(f"{where}: {path_text} has no {', '.join(missing)} (the manifest changed: update the slide)")
    excerpt = yaml.safe_dump(prune(docs[0], paths), sort_keys=False, default_flow_style=None, width=72)
    return (
        f"```yaml\n{excerpt.rstrip()}\n```\n\n"
        f'<p class="source">excerpt of <code>{html.escape(path_text)}</code>, read when the deck was built</p>'
    )


# --------------------------------------------------------------------------------------------------
# Figures and tables
# --------------------------------------------------------------------------------------------------

IMAGE_REF = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def referenced(slides: list[Slide]) -> tuple[list[str], list[str]]:
    figures, tables = [], []
    for slide in slides:
        for src in IMAGE_REF.findall(slide.body):
            if src.startswith("figures/"):
                name = Path(src).stem
                if name not in figures:
                    figures.append(name)
        for name in TABLE_DIRECTIVE.findall(slide.body):
            if name not in tables:
                tables.append(name)
    return figures, tables


def generate(figure_names: list[str], table_names: list[str], out_dir: Path, log: Callable[[str], None]):
    deck_figures = _figures_module()

    unknown = [n for n in figure_names if n not in deck_figures.FIGURES] + [
        n for n in table_names if n not in deck_figures.TABLES
    ]
    if unknown:
        raise BuildError(
            f"deck.md refers to unknown figures/tables {unknown}; deck_figures.py defines "
            f"{sorted(deck_figures.FIGURES)} and tables {sorted(deck_figures.TABLES)}"
        )
    context = deck_figures.Context(out_dir / "figures", log=log)
    figures, tables = {}, {}
    for name in figure_names:
        started = time.perf_counter()
        figures[name] = deck_figures.FIGURES[name](context)
        log(f"  figure {name:<22} {_status(figures[name]):<9} {time.perf_counter() - started:5.1f} s")
    for name in table_names:
        tables[name] = deck_figures.TABLES[name](context)
        log(f"  table  {name:<22} {_status(tables[name])}")
    return figures, tables


def _status(result) -> str:
    return "pending" if type(result).__name__ == "Pending" else "generated"


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def pending_html(message: str, what: str = "Figure") -> str:
    return f'<span class="pending" role="note"><strong>{what} to come.</strong> {html.escape(message)}</span>'


# --------------------------------------------------------------------------------------------------
# Markdown -> HTML
# --------------------------------------------------------------------------------------------------


def markdown_renderer():
    from markdown_it import MarkdownIt
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    formatter = HtmlFormatter(nowrap=True)

    def highlight_code(code: str, lang: str, _attrs: str) -> str:
        try:
            lexer = get_lexer_by_name(lang) if lang else TextLexer()
        except ClassNotFound:
            lexer = TextLexer()
        return f'<pre class="code"><code class="highlight">{highlight(code, lexer, formatter)}</code></pre>'

    md = MarkdownIt("commonmark", {"html": True, "typographer": False, "highlight": highlight_code})
    md.enable(["table", "strikethrough"])

    def render_image(self, tokens, idx, options, env):
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children or [], options, env)
        return env["image"](token.attrGet("src") or "", alt)

    md.add_render_rule("image", render_image)
    return md


def slide_html(slide: Slide, md, figures: dict, tables: dict) -> str:
    deck_figures = _figures_module()

    where = slide.where
    body = LAB_DIRECTIVE.sub(lambda m: expand_lab(m.group(1), m.group(2).strip()), slide.body)
    body = MANIFEST_DIRECTIVE.sub(lambda m: expand_manifest(m.group(1), m.group(2), where), body)

    def table(match: re.Match) -> str:
        result = tables[match.group(1)]
        if isinstance(result, deck_figures.Pending):
            return f'<div class="table-block">{pending_html(result.message, "Table")}</div>'
        return (
            f'<div class="table-block">{result.html}'
            f'<span class="figure-source">{html.escape(result.source)}</span></div>'
        )

    body = TABLE_DIRECTIVE.sub(table, body)
    leftover = re.search(r"\{\{.*?\}\}", body, re.S)
    if leftover:
        raise BuildError(f"{where}: unknown directive {leftover.group(0)[:60]!r}")

    def image(src: str, alt: str) -> str:
        if re.match(r"^(?:[a-z]+:)?//", src, re.I) or src.startswith(("http:", "https:")):
            raise BuildError(f"{where}: image {src} is on the network; the deck must present offline")
        if src.startswith("figures/"):
            result = figures[Path(src).stem]
            if isinstance(result, deck_figures.Pending):
                return pending_html(result.message)
            return (
                f'<img class="figure" src="{data_uri(result.path)}" alt="{html.escape(alt)}">'
                f'<span class="figure-source">Generated by the build: {html.escape(result.source)}</span>'
            )
        path = (SLIDES / src).resolve()
        if not path.is_file():
            raise BuildError(f"{where}: image {src} not found (relative to slides/)")
        return f'<img src="{data_uri(path)}" alt="{html.escape(alt)}">'

    env = {"image": image}
    attrs = {**KIND_ATTRS.get(slide.kind, {}), **slide.attrs}
    attrs["class"] = " ".join(dict.fromkeys([*attrs.get("class", "").split(), slide.kind]))
    attrs.update({"id": f"slide-{slide.number}", "data-source-line": str(slide.line)})
    attr_text = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
    content = md.render(body, env)
    notes = md.render(slide.notes, env)
    return f'<section {attr_text}>\n{content}<aside class="notes">\n{notes}</aside>\n</section>'


# --------------------------------------------------------------------------------------------------
# reveal.js, the page, and the self-containment check
# --------------------------------------------------------------------------------------------------


def reveal_version_locked() -> str:
    lock = json.loads((SLIDES / "package-lock.json").read_text())
    return lock["packages"]["node_modules/reveal.js"]["version"]


def ensure_reveal(log: Callable[[str], None]) -> str:
    """reveal.js at the locked version in slides/node_modules (``npm ci`` when it is missing or stale)."""
    wanted = reveal_version_locked()
    installed = REVEAL_DIR / "package.json"
    if installed.is_file() and json.loads(installed.read_text()).get("version") == wanted:
        return wanted
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("npm is needed once to install reveal.js (Node 20+): then run this again")
    log(f"  npm ci (reveal.js {wanted})")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=SLIDES, check=True)
    return wanted


def pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style=PYGMENTS_STYLE).get_style_defs(".reveal pre code.highlight")


INIT_SCRIPT = """
const params = new URLSearchParams(window.location.search);
Reveal.initialize({
  hash: true,
  width: %(width)d,
  height: %(height)d,
  margin: 0.04,
  center: true,
  controls: true,
  progress: true,
  slideNumber: "c/t",
  transition: "fade",
  transitionSpeed: "fast",
  backgroundTransition: "none",
  pdfMaxPagesPerSlide: 1,
  pdfSeparateFragments: false,
  // deck.html?print-pdf&notes prints each slide's notes on the page after it (the instructor's copy)
  showNotes: params.has("notes") ? "separate-page" : false,
  plugins: [RevealNotes],
});
"""


def page_html(sections: list[str], reveal_version: str) -> str:
    css = [(REVEAL_DIR / p).read_text(encoding="utf-8") for p in REVEAL_ASSETS["css"]]
    css += [pygments_css(), THEME_CSS.read_text(encoding="utf-8")]
    scripts = [
        f'<script src="data:text/javascript;base64,{base64.b64encode((REVEAL_DIR / p).read_bytes()).decode()}">'
        "</script>"
        for p in REVEAL_ASSETS["js"]
    ]
    styles = "\n".join(f"<style>\n{c}\n</style>" for c in css)
    slides = "\n\n".join(sections)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="generator" content="slides/build.py from slides/deck.md, reveal.js {reveal_version}">
<title>{html.escape(TITLE)}</title>
<link rel="icon" href="data:,">
{styles}
</head>
<body>
<div class="reveal">
<div class="slides">
{slides}
</div>
</div>
{chr(10).join(scripts)}
<script>{INIT_SCRIPT % {"width": WIDTH, "height": HEIGHT}}</script>
</body>
</html>
"""


URL_ATTRIBUTES = {"src", "href", "poster", "data-src", "data-background-image", "data-background-video",
                  "data-background-iframe", "action", "formaction", "srcset", "data", "xlink:href"}  # fmt: skip


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in URL_ATTRIBUTES or name.startswith("data-background"):
                self.refs.append((tag, name, value or ""))
            if name == "style" and value:
                self.styles.append(value)

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def external_references(page: str) -> list[str]:
    """Every reference in the page that is not a data: URI or a fragment of the page itself."""
    parser = _Refs()
    parser.feed(page)
    bad = [f"<{tag} {name}={value[:80]!r}>" for tag, name, value in parser.refs
           if value.strip() and not value.strip().startswith(("data:", "#"))]  # fmt: skip
    for css in parser.styles:
        for target in re.findall(r"url\(\s*['\"]?([^'\")]*)", css):
            if not target.strip().startswith(("data:", "#")):
                bad.append(f"CSS url({target[:80]})")
        bad += [f"CSS {m[:80]}" for m in re.findall(r"@import[^;]*", css)]
    return bad


# --------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    _figures_module()  # puts slides/ on the path
    from deck_ui import find_chromium

    found = find_chromium()
    if found:
        return found
    raise BuildError("the PDF needs Chromium: `apt-get install -y chromium` (or set CHROMIUM=/path/to/chrome)")


def export_pdf(deck: Path, pdf: Path, *, notes: bool = False) -> int:
    """Print ``deck`` to ``pdf`` with headless Chromium (reveal's print view); returns the number of pages."""
    from playwright.sync_api import sync_playwright

    url = deck.resolve().as_uri() + ("?print-pdf&notes" if notes else "?print-pdf")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else route.abort())  # fmt: skip
            page.goto(url)
            page.wait_for_function("() => window.Reveal && Reveal.isReady() && document.querySelector('.pdf-page')")
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
            page.pdf(path=str(pdf), print_background=True, prefer_css_page_size=True,
                     width=f"{WIDTH}px", height=f"{HEIGHT}px")  # fmt: skip
        finally:
            browser.close()
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes()))


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------


def build(out_dir: Path = DEFAULT_OUT, *, pdf: bool = False, pdf_notes: bool = False,
          log: Callable[[str], None] = print) -> dict:  # fmt: skip
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "figures", ignore_errors=True)  # no figure survives from an earlier build
    slides = parse_deck(DECK.read_text(encoding="utf-8"))
    log(f"deck.md: {len(slides)} slides")
    reveal_version = ensure_reveal(log)
    figure_names, table_names = referenced(slides)
    figures, tables = generate(figure_names, table_names, out_dir, log)
    md = markdown_renderer()
    page = page_html([slide_html(slide, md, figures, tables) for slide in slides], reveal_version)
    bad = external_references(page)
    if bad:
        raise BuildError("deck.html would need the network for:\n  " + "\n  ".join(bad))
    deck = out_dir / "deck.html"
    deck.write_text(page, encoding="utf-8")
    summary = {
        "slides": len(slides),
        "kinds": {kind: sum(s.kind == kind for s in slides) for kind in (*SLIDE_KINDS, "content")},
        "labs": sorted(set(re.findall(r"\{\{lab:(\d\d)\|", DECK.read_text(encoding="utf-8")))),
        "figures": {name: _status(result) for name, result in figures.items()},
        "tables": {name: _status(result) for name, result in tables.items()},
        "reveal.js": reveal_version,
        "bytes": deck.stat().st_size,
    }
    log(f"wrote {deck.relative_to(REPO) if deck.is_relative_to(REPO) else deck} "
        f"({summary['bytes'] / 1e6:.1f} MB, {len(slides)} slides)")  # fmt: skip
    if pdf or pdf_notes:
        for notes, name in ((False, "deck.pdf"), (True, "deck-notes.pdf")):
            if (notes and pdf_notes) or (not notes and pdf):
                pages = export_pdf(deck, out_dir / name, notes=notes)
                summary[name] = pages
                log(f"wrote {name} ({pages} pages)")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "deck.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"done in {summary['seconds']:.0f} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: slides/build)")
    parser.add_argument("--pdf", action="store_true", help="also export deck.pdf (one page per slide) for handouts")
    parser.add_argument("--pdf-notes", action="store_true",
                        help="also export deck-notes.pdf: each slide followed by its speaker notes")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        build(args.out, pdf=args.pdf, pdf_notes=args.pdf_notes)
    except BuildError as error:
        print(f"slides/build.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
