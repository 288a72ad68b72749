"""The book as a static web site: ``python -m bigmodel_utils.site build [--notebooks DIR] [--out DIR]``.

The site is built with Sphinx, MyST-NB and the book theme from notebooks that have already run (MyST-NB never
executes them): by default the FULL copies that ``make book`` writes (``_build/notebooks/`` and
``_build/solutions/``); the tests build it from their SMOKE copies (``_build/smoke/chapters/``). It has a sidebar
with the book's parts (:data:`PARTS`) and chapters, previous/next links, full-text search, mathematics rendered
by a copy of MathJax 3 inside the site, code, outputs and plots, the glossary as a page, and the README's chapter
table as its front page. Nothing in it is fetched from the internet when a page loads
(:func:`external_references` checks the built files; ``tests/test_site.py`` checks a browser's requests).

Sphinx's source folder is generated in ``_build/site-src/`` (``conf.py``, ``index.md``, ``glossary.rst`` and the
notebooks); the site lands in ``_build/site/``. Widgets (chapters' sliders) show their static HTML fallback:
they are live only in JupyterLab.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bigmodel_utils.paths import BUILD_DIR, CHAPTERS_DIR, REPO_ROOT

SITE_DIR = BUILD_DIR / "site"
SOURCE_DIR = BUILD_DIR / "site-src"
NOTEBOOKS_DIR = BUILD_DIR / "notebooks"
SERVE_PORT = 8001

# The book's parts: the one place that says which chapter belongs to which part (the sidebar's captions).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Part I · Foundations", ("00", "01", "02")),
    ("Part II · Data and the classic networks", ("03", "04", "05", "06")),
    ("Part III · Transformers and evaluation", ("07", "08")),
    ("Part IV · Scale and size", ("09", "10")),
    ("Part V · Serving and Model-as-a-Service", ("11", "12")),
    ("Part VI · Generative models", ("13", "14")),
    ("Part VII · Questions and answers", ("15",)),
)
SOLUTIONS_CAPTION = "Solutions"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# A page without the table of contents on the right (the front page, the glossary) uses its room.
SITE_CSS = """.bd-main .bd-content:not(:has(.bd-sidebar-secondary)) .bd-article-container { max-width: 100%; }
"""
MATHJAX_OFFLINE = "sphinx-mathjax-offline"  # the extension's import name, hyphens and all


def part_of(number: str) -> str:
    """The part a chapter number (``"07"``) belongs to; ValueError for a number no part lists."""
    for caption, numbers in PARTS:
        if number in numbers:
            return caption
    raise ValueError(f"chapter {number} is in no part: add it to bigmodel_utils.site.PARTS")


def _notebooks(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def executed_mode(notebook: str | Path) -> str | None:
    """``"FULL"`` or ``"SMOKE"``, read from the parameters papermill injected into an executed notebook (None if
    it says neither)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell.get("source", ""))
            m = re.search(r"^SMOKE\s*=\s*(True|False)", source, re.M)
            if m:
                return "SMOKE" if m.group(1) == "True" else "FULL"
    return None


# --- the generated pages ----------------------------------------------------------------------------------


def _fallback_table(chapters: list[Path]) -> str:
    from bigmodel_utils.ledger import _title

    lines = ["| # | chapter |", "|---|---|"]
    lines += [f"| {p.stem[:2]} | [{_title(p)}](chapters/{p.name}) |" for p in chapters]
    return "\n".join(lines)


def chapter_table(chapters: list[Path]) -> str:
    """The README's chapter table (generated from the results ledger) for ``chapters``, its links pointing at the
    site's chapter pages; a plain table of titles where a chapter has no ledger entry."""
    from bigmodel_utils import ledger

    sources = [CHAPTERS_DIR / p.name for p in chapters]
    try:
        table = ledger.readme_table(notebooks=sources)
    except (ledger.LedgerError, OSError, KeyError, ValueError):
        return _fallback_table(chapters)
    table = table.replace("[`results/`](results/)", "the results ledger (`results/` in the repository)")
    return "\n".join(line for line in table.splitlines() if not line.startswith("<!--"))


def front_page(chapters: list[Path], solutions: list[Path], readme: Path = REPO_ROOT / "README.md") -> str:
    """``index.md``: the README's title and introduction, its chapter table, a note on the run shown, and the
    sidebar's table of contents (one hidden toctree per part)."""
    text = readme.read_text(encoding="utf-8")
    intro = text.split("\n## ", 1)[0].strip()
    title, _, subtitle = intro.split("\n", 1)[0].partition(": ")  # "# bigmodel: large models, ..."
    if subtitle:  # the sidebar's first entry is this page's title: keep it short
        intro = intro.replace(intro.split("\n", 1)[0], f"{title}\n\n*{subtitle[0].upper()}{subtitle[1:]}.*", 1)
    modes = {executed_mode(p) for p in chapters + solutions} - {None}
    shown = " and ".join(sorted(modes)) or "an unknown"
    lines = [intro, "", "## The chapters", "", chapter_table(chapters), "",
             f"These pages show the notebooks as they were executed in {shown} mode"
             + (" (small data, few epochs: the numbers in the pages are not the book's results; the table's are)."
                if "SMOKE" in modes else "."),
             "Sliders and other controls are live only in JupyterLab (`make lab`); here they show a still.", ""]
    numbers = {p.stem[:2]: p for p in chapters}
    for caption, members in PARTS:
        present = [numbers[n] for n in members if n in numbers]
        if present:
            lines += ["```{toctree}", ":hidden:", f":caption: {caption}", ""]
            lines += [f"chapters/{p.stem}" for p in present] + ["```", ""]
    if solutions:
        lines += ["```{toctree}", ":hidden:", f":caption: {SOLUTIONS_CAPTION}", ""]
        lines += [f"solutions/{p.stem}" for p in solutions] + ["```", ""]
    lines += ["```{toctree}", ":hidden:", ":caption: Reference", "", "glossary", "```", ""]
    return "\n".join(lines)


def _rst_text(value: str) -> str:
    """Plain text for a reStructuredText table cell: markup characters escaped."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", " ".join(str(value).split()))


def glossary_page(rows: list[dict] | None = None) -> str:
    """``glossary.rst``: every glossary term (english, chinese, chapter, note) in one table, each English term an
    anchor (``#term-<english>``) so that links and the site's search find it."""
    from bigmodel_utils.glossary import glossary_rows

    rows = glossary_rows() if rows is None else rows
    rows = sorted(rows, key=lambda r: (int(r["chapter"]), r["english"].lower()))
    out = ["Glossary", "========", "",
           "The English terms of the book and the Chinese terms of the source articles, grouped by the chapter that "
           "introduces them (``data/glossary.csv``; ``from bigmodel_utils.glossary import glossary`` in a notebook).",
           "", ".. list-table::", "   :header-rows: 1", "   :widths: 25 15 8 52", "",
           "   * - English", "     - Chinese", "     - chapter", "     - note"]
    for r in rows:
        anchor = "term-" + re.sub(r"[^a-z0-9]+", "-", r["english"].lower()).strip("-")
        out += [f"   * - .. _{anchor}:", "", f"       **{_rst_text(r['english'])}**",
                f"     - {_rst_text(r['chinese'])}", f"     - {int(r['chapter']):02d}",
                f"     - {_rst_text(r.get('note') or '') or '–'}"]
    return "\n".join(out) + "\n"


def sphinx_config(mathjax_path: str | None = None) -> dict:
    """The site's Sphinx settings. ``mathjax_path=None`` serves MathJax 3 from the site itself
    (``sphinx-mathjax-offline``); another path (a CDN's URL) is only for showing that the offline check catches it."""
    extensions = ["myst_nb", "sphinx_book_theme"]
    config: dict = {
        "project": "bigmodel",
        "author": "the bigmodel authors",
        "language": "en",
        "html_title": "bigmodel",
        "extensions": extensions,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {
            "home_page_in_toc": True,
            "show_toc_level": 2,
            "use_download_button": True,  # the .ipynb and .md sources, from the site itself
            "use_fullscreen_button": True,
            "use_repository_button": False,
            "use_issues_button": False,
            "use_edit_page_button": False,
            "use_source_button": False,
            "launch_buttons": {},  # Binder, Colab, JupyterHub: all need the network
            "navigation_with_keys": False,
            # the front page's and the glossary's wide tables take the room of the page's table of contents
            "secondary_sidebar_items": {"**": ["page-toc"], "index": [], "glossary": []},
        },
        "html_static_path": ["_static"],
        "html_css_files": ["bigmodel.css"],
        "html_show_sphinx": False,
        "html_copy_source": True,
        "myst_enable_extensions": ["dollarmath", "amsmath"],
        "myst_heading_anchors": 3,
        "nb_execution_mode": "off",  # the notebooks ran already (make book, make test)
        "nb_ipywidgets_js": {},  # no require.js or widget manager from a CDN
        "nb_mime_priority_overrides": [("html", WIDGET_VIEW, None)],  # a widget's static HTML, never an empty box
        "nb_merge_streams": True,
        "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
    }
    if mathjax_path is None:
        extensions.append(MATHJAX_OFFLINE)
    else:
        config["mathjax_path"] = mathjax_path
    return config


def write_source(chapters: list[Path], solutions: list[Path], src: Path, mathjax_path: str | None = None) -> Path:
    """Generate Sphinx's source folder ``src``: conf.py, index.md, glossary.rst, chapters/ and solutions/.

    Notebooks are copied only when their bytes changed, so that Sphinx rebuilds only the pages that did."""
    src.mkdir(parents=True, exist_ok=True)
    for sub, notebooks in (("chapters", chapters), ("solutions", solutions)):
        folder = src / sub
        folder.mkdir(exist_ok=True)
        wanted = {p.name for p in notebooks}
        for old in folder.glob("*.ipynb"):
            if old.name not in wanted:
                old.unlink()
        for p in notebooks:
            target = folder / p.name
            if not target.exists() or target.read_bytes() != p.read_bytes():
                shutil.copyfile(p, target)
    files = {
        "conf.py": "# generated by bigmodel_utils.site: edit that module, not this file\n"
                   + "".join(f"{k} = {v!r}\n" for k, v in sphinx_config(mathjax_path).items()),
        "index.md": front_page(chapters, solutions),
        "glossary.rst": glossary_page(),
        "_static/bigmodel.css": SITE_CSS,
    }
    (src / "_static").mkdir(exist_ok=True)
    for name, text in files.items():
        path = src / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return src


# --- building and checking ----------------------------------------------------------------------------------


@dataclass
class SiteBuild:
    """The outcome of a site build."""

    out: Path
    ok: bool
    seconds: float
    chapters: int
    solutions: int
    warnings: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)  # what the pages would fetch from the internet
    error: str | None = None

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    def describe(self) -> str:
        if not self.ok:
            return f"site build FAILED after {self.seconds:.0f} s: {self.error}"
        solutions = f" and {_count(self.solutions, 'solutions notebook')}" if self.solutions else ""
        lines = [f"site built in {self.seconds:.0f} s from {_count(self.chapters, 'chapter')}{solutions}, "
                 f"{_count(len(self.warnings), 'Sphinx warning')}"]
        if self.external:
            lines.append(f"{len(self.external)} reference(s) to the internet: {', '.join(self.external[:5])}")
        lines += [f"open {self.index}",
                  f"or serve it (search works in both): {_shown(Path(sys.executable))} -m http.server -d "
                  f"{_shown(self.out)} {SERVE_PORT} --bind 127.0.0.1   then http://127.0.0.1:{SERVE_PORT}/"]
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shown(path: Path) -> str:
    """``path`` relative to the working folder where it is inside it (no symbolic link followed)."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def build_site(
    notebooks: str | Path = NOTEBOOKS_DIR,
    out: str | Path = SITE_DIR,
    *,
    solutions: str | Path | None = None,
    src: str | Path | None = None,
    mathjax_path: str | None = None,
    timeout: float = 1800,
) -> SiteBuild:
    """Build the site from the executed notebooks in ``notebooks`` (and ``solutions``, by default the folder
    ``solutions`` beside it) into ``out``, with Sphinx in a child process (``-j 1``, quiet). Warnings do not fail
    the build; they are collected in the result, as are references to the internet the pages would load."""
    notebooks = Path(notebooks)
    out = Path(out)
    solutions = notebooks.parent / "solutions" if solutions is None else Path(solutions)
    src = out.parent / f"{out.name}-src" if src is None else Path(src)
    chapters, worked = _notebooks(notebooks), _notebooks(solutions)
    start = time.perf_counter()
    if not chapters:
        return SiteBuild(out, False, 0.0, 0, 0, error=f"no executed chapters (NN_slug.ipynb) in {notebooks}: "
                         "run `make book` (FULL) or `make test` (SMOKE copies in _build/smoke/chapters) first")
    for p in chapters:
        part_of(p.stem[:2])
    write_source(chapters, worked, src, mathjax_path)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-j", "1", "-q", "-d", str(src / ".doctrees"),
           str(src), str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return SiteBuild(out, False, time.perf_counter() - start, len(chapters), len(worked),
                         error=f"Sphinx ran over {timeout:.0f} s")
    seconds = time.perf_counter() - start
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    if proc.returncode != 0 or not (out / "index.html").exists():
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()][-5:]
        return SiteBuild(out, False, seconds, len(chapters), len(worked), warnings,
                         error=f"sphinx exited with status {proc.returncode}: " + " | ".join(tail))
    return SiteBuild(out, True, seconds, len(chapters), len(worked), warnings, external_references(out))


_TAGS = re.compile(r"<(script|link|img|iframe|source|video|audio|embed|object)\b([^>]*)>", re.I)
_ATTR = re.compile(r"""\b(src|href|data)\s*=\s*(["'])(.*?)\2""", re.I | re.S)
_CSS_URL = re.compile(r"""@import\s+(?:url\()?\s*["']?([^"')\s;]+)|url\(\s*["']?([^"')]+)["']?\s*\)""", re.I)
_NOT_LOADED = re.compile(r"""rel\s*=\s*["']?(canonical|alternate|author|license)""", re.I)  # <link>s, not fetched
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)


def external_references(site: str | Path) -> list[str]:
    """Every URL on another machine that a page of ``site`` loads as it opens: ``<script src>``, ``<link href>``
    (style sheets, fonts, icons, preloads; not ``rel=canonical``), images, frames, and ``@import``/``url()`` in
    style sheets and ``style`` attributes. Plain links (``<a href>``) are not loaded, so they are not counted.
    Returned as ``"file: url"`` strings, sorted; empty for a site that works offline."""
    site = Path(site)
    found: set[str] = set()
    for path in sorted(site.rglob("*.html")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for tag, attrs in _TAGS.findall(text):
            if tag.lower() == "link" and _NOT_LOADED.search(attrs):
                continue
            for _, _, url in _ATTR.findall(attrs):
                if _REMOTE.match(html.unescape(url).strip()):
                    found.add(f"{path.relative_to(site)}: {url}")
        for style in re.findall(r"<style[^>]*>(.*?)</style>|style\s*=\s*\"([^\"]*)\"", text, re.I | re.S):
            for url in _css_urls(" ".join(style)):
                found.add(f"{path.relative_to(site)}: {url}")
    for path in sorted(site.rglob("*.css")):
        for url in _css_urls(path.read_text(encoding="utf-8", errors="replace")):
            found.add(f"{path.relative_to(site)}: {url}")
    return sorted(found)


def _css_urls(css: str) -> list[str]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    urls = [a or b for a, b in _CSS_URL.findall(css)]
    return [u.strip() for u in urls if _REMOTE.match(html.unescape(u).strip())]


# --- the command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.site", description="Build the book's web site.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the site from executed notebooks (MyST-NB does not run them)")
    build.add_argument("--notebooks", default=str(NOTEBOOKS_DIR),
                       help="executed chapters (default _build/notebooks, written by `make book`; "
                            "_build/smoke/chapters holds the SMOKE copies of `make test`)")
    build.add_argument("--solutions", default=None, help="executed solutions (default: 'solutions' beside --notebooks)")
    build.add_argument("--out", default=str(SITE_DIR), help="where the site goes (default _build/site)")
    args = parser.parse_args(argv)
    print(f"building the book's site from {args.notebooks} ...", flush=True)
    result = build_site(args.notebooks, args.out, solutions=args.solutions)
    for line in result.warnings[:10]:
        print(f"  {line}")
    if len(result.warnings) > 10:
        print(f"  ... and {len(result.warnings) - 10} more warning(s)")
    print(result.describe())
    if not result.ok:
        return 1
    return 1 if result.external else 0


if __name__ == "__main__":
    sys.exit(main())
