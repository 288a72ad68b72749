"""The book's web site (``python -m bigmodel_utils.site build``): its pages, and the site in a real browser.

The site is built from SMOKE-executed notebooks: the whole book's when ``tests/test_notebooks.py`` has left every
chapter in ``_build/smoke/`` (as in ``make test``), else chapters 00–02, executed here if they are missing. In
headless Chromium, with every host but 127.0.0.1 unreachable, and every request the pages make recorded: nothing
is fetched from elsewhere, the mathematics is rendered by the site's own MathJax, every sidebar link works, the
search finds a glossary term, and plots load. The screenshot lands in ``_build/site-screenshot.png``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import headless_chromium, serve_folder

from bigmodel_utils import site
from bigmodel_utils.book import chapter_paths, run_notebook
from bigmodel_utils.glossary import glossary_rows
from bigmodel_utils.paths import BUILD_DIR

SMOKE = BUILD_DIR / "smoke"
pytestmark = pytest.mark.xdist_group("site")  # with chapters 00-02's notebook tests, which run first (test_notebooks.py)
FEW = ("00", "01", "02")  # fast chapters; 02 has display mathematics ($$) and plots
MATH_CHAPTER = "02_mathematics_of_learning"
CDN_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"


# --- the pure parts ---------------------------------------------------------------------------------------


def test_every_chapter_is_in_exactly_one_part_in_order():
    numbers = [p.stem[:2] for p in chapter_paths()]
    in_parts = [n for _, members in site.PARTS for n in members]
    assert sorted(in_parts) == in_parts, "parts list the chapters in the book's order"
    assert in_parts == numbers, (f"chapters without a part: {set(numbers) - set(in_parts)}; "
                                 f"unknown: {set(in_parts) - set(numbers)}")
    assert site.part_of("13") == "Part VI · Generative models"  # the README's name for 13–14
    with pytest.raises(ValueError, match="add it to bigmodel_utils.site.PARTS"):
        site.part_of("99")


def test_glossary_page_has_every_term_with_its_own_anchor():
    rows = glossary_rows()
    page = site.glossary_page(rows)
    anchors = re.findall(r"^   \* - \.\. _(term-[a-z0-9-]+):$", page, re.M)
    assert len(anchors) == len(rows) == len(set(anchors)), "one anchor per term, no two alike"
    for r in rows:
        assert site._rst_text(r["english"]) in page and r["chinese"] in page
    tricky = site.glossary_page([{"english": "a*b_c", "chinese": "词", "chapter": 3, "note": "`x` | y"}])
    assert r"a\*b\_c" in tricky and r"\`x\` \| y" in tricky and "term-a-b-c" in tricky


def test_front_page_links_every_chapter_and_lists_the_parts():
    chapters = chapter_paths()
    page = site.front_page(chapters, [])
    for p in chapters:
        assert f"](chapters/{p.name})" in page, f"the table does not link {p.name}"
        assert f"\nchapters/{p.stem}\n" in page, f"no toctree holds {p.stem}"
    for caption, _ in site.PARTS:
        assert f":caption: {caption}" in page
    assert "](results/)" not in page, "the ledger folder is not part of the site: no link to it"
    assert "<!--" not in page and site.SOLUTIONS_CAPTION not in page


def test_external_references_finds_what_a_page_would_load(tmp_path):
    (tmp_path / "a.html").write_text(
        '<link rel="stylesheet" href="https://fonts.example/x.css"><link rel="canonical" href="https://book.example/">'
        '<script src="//cdn.example/m.js"></script><script src="_static/ok.js"></script>'
        '<a href="https://example.org/paper">a paper</a><img src="_images/p.png">'
        '<div style="background: url(\'https://img.example/b.png\')"></div>', encoding="utf-8")
    (tmp_path / "s.css").write_text('/* url(https://in.a/comment) */ @import "https://x.example/i.css";\n'
                                    'a { background: url(data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E) }',
                                    encoding="utf-8")
    found = site.external_references(tmp_path)
    assert found == sorted(["a.html: https://fonts.example/x.css", "a.html: //cdn.example/m.js",
                            "a.html: https://img.example/b.png", "s.css: https://x.example/i.css"])


# --- a built site -------------------------------------------------------------------------------------------


def _complete(executed: Path) -> bool:
    """An executed copy that papermill finished without an error (it writes the copy cell by cell, and in a
    parallel run another worker may still be writing it)."""
    try:
        meta = json.loads(executed.read_text(encoding="utf-8"))["metadata"].get("papermill", {})
    except (OSError, ValueError, KeyError):
        return False
    return bool(meta.get("end_time")) and not meta.get("exception")


def _executed_chapters(tmp: Path) -> tuple[Path, str]:
    """The folder of SMOKE-executed chapters to build from, and which set it is."""
    chapters = SMOKE / "chapters"
    if all(_complete(chapters / p.name) for p in chapter_paths()):
        return chapters, "the whole book"
    folder = tmp / "chapters"
    folder.mkdir(parents=True)
    for number in FEW:
        (source,) = [p for p in chapter_paths() if p.stem.startswith(number + "_")]
        if _complete(chapters / source.name):
            shutil.copyfile(chapters / source.name, folder / source.name)
        else:
            result = run_notebook(source, folder, smoke=True, timeout=600)
            assert result.ok, result.describe()
    return folder, f"chapters {', '.join(FEW)}"


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """A folder served on 127.0.0.1 (a free port) holding the built site under ``book/``: (folder, base URL)."""
    root = tmp_path_factory.mktemp("www")
    with serve_folder(root) as url:
        yield root, url


@pytest.fixture(scope="module")
def book(www, tmp_path_factory):
    notebooks, which = _executed_chapters(tmp_path_factory.mktemp("executed"))
    result = site.build_site(notebooks, www[0] / "book", src=tmp_path_factory.mktemp("site-src"))
    assert result.ok, result.describe()
    print(f"\nsite of {which}: {result.describe()}")
    return result


@pytest.mark.slow
def test_site_is_built_with_no_reference_to_the_internet(book):
    assert book.external == [], "the pages load things from the internet"
    assert (book.out / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is served from the site"
    index = book.index.read_text(encoding="utf-8")
    for p in sorted(book.out.glob("chapters/*.html")):
        assert f'href="chapters/{p.name}"' in index, f"the front page does not link {p.name}"
    glossary = (book.out / "glossary.html").read_text(encoding="utf-8")
    for r in glossary_rows():
        assert r["chinese"] in glossary
    assert len(re.findall(r'id="term-', glossary)) == len(glossary_rows())


def _widget_notebook(path: Path) -> Path:
    """An executed notebook whose output holds a live control (widget view) and its static HTML fallback."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0,
        "state": {"abc123": {"model_name": "IntSliderModel", "model_module": "@jupyter-widgets/controls",
                             "model_module_version": "2.0.0", "state": {"value": 3}}}}}
    cell = new_code_cell("interactive_plot()", execution_count=1)
    cell.outputs = [new_output("display_data", data={
        "text/plain": "IntSlider(value=3)",
        "text/html": "<p class='still'>A still of the slider: live only in JupyterLab.</p>",
        site.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": "abc123"}})]
    text = "# 00 · Widgets\n\nInline $x^2$ and\n\n$$\\sum_i x_i$$\n\n[A page that is not there](nowhere.ipynb)."
    nb.cells = [new_markdown_cell(text), cell]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def cdn_site(www, tmp_path_factory):
    """A one-page site built the wrong way (MathJax from a CDN), with a widget output: what the checks must catch."""
    folder = tmp_path_factory.mktemp("widgets") / "chapters"
    folder.mkdir()
    _widget_notebook(folder / "00_widgets.ipynb")
    result = site.build_site(folder, www[0] / "cdn", mathjax_path=CDN_MATHJAX)
    assert result.ok, result.describe()
    return result


@pytest.mark.slow
def test_widgets_show_their_static_fallback_and_the_cdn_is_caught(cdn_site):
    page = (cdn_site.out / "chapters" / "00_widgets.html").read_text(encoding="utf-8")
    assert "A still of the slider: live only in JupyterLab." in page
    assert site.WIDGET_VIEW not in page, "the widget view (an empty box without JupyterLab) was rendered"
    assert "require.js" not in page and "html-manager" not in page, "widget JavaScript from a CDN"
    assert "widget-state+json" in page  # the notebook's widget state is there; only the CDN scripts are not
    assert any(CDN_MATHJAX in ref for ref in cdn_site.external), cdn_site.external
    assert not (cdn_site.out / "_static" / "mathjax").exists()
    assert len(cdn_site.warnings) == 1 and "nowhere.ipynb" in cdn_site.warnings[0]  # counted, not fatal
    assert "1 Sphinx warning" in cdn_site.describe()


# --- in a browser ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with headless_chromium("1200,800") as driver:
        yield driver


def _requests(driver) -> list[str]:
    """Every URL the browser asked for since the last call (the DevTools log: failed and blocked requests too)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _elsewhere(urls: list[str], base: str) -> list[str]:
    return [u for u in urls if not u.startswith((base + "/", "data:", "blob:", "about:"))]


def _open(driver, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


@pytest.mark.slow
def test_the_request_log_catches_a_page_that_loads_from_a_cdn(browser, www, cdn_site):
    _requests(browser)
    _open(browser, f"{www[1]}/cdn/chapters/00_widgets.html")
    elsewhere = _elsewhere(_requests(browser), www[1])
    assert CDN_MATHJAX in elsewhere, f"the CDN's MathJax request was not seen: {elsewhere}"
    assert not browser.find_elements("css selector", "mjx-container"), "the CDN is blocked: no math renders"


# the display equations wider than their box, with the start of their text and both widths in pixels
WIDE_EQUATIONS = """return [...document.querySelectorAll("mjx-container[display='true']")]
    .filter(m => m.scrollWidth > m.clientWidth + 2)
    .map(m => m.textContent.slice(0, 60) + ' | ' + m.scrollWidth + ' > ' + m.clientWidth)"""


@pytest.mark.slow
def test_math_renders_offline_and_sidebar_links_work(browser, www, book):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = f"{www[1]}/book"
    _requests(browser)
    _open(browser, f"{base}/chapters/{MATH_CHAPTER}.html")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container[display='true'] mjx-math"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "mjx-container")) > 20, "inline mathematics rendered too"
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "$$" not in text and "\\frac" not in text, "raw TeX on the page"
    browser.execute_async_script("MathJax.startup.promise.then(arguments[arguments.length - 1])")
    wide = browser.execute_script(WIDE_EQUATIONS)
    assert wide == [], f"display equations wider than the text column (a reader scrolls them sideways): {wide}"
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('.cell_output img')].some(i => i.complete && i.naturalWidth > 0)"))

    sidebar = browser.find_elements(By.CSS_SELECTOR, ".bd-sidebar-primary nav.bd-links a.reference")
    links = sorted({a.get_attribute("href").split("#")[0] for a in sidebar})
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".bd-sidebar-primary p.caption")]
    assert captions[0] == site.PARTS[0][0] and "Reference" in captions, captions
    chapters = list(book.out.glob("chapters/*.html"))
    assert len(links) >= len(chapters) + 1, links  # every chapter and the glossary (and solutions, if any)
    for link in links:
        assert link.startswith(base + "/"), link
        with urllib.request.urlopen(link, timeout=10) as response:
            assert response.status == 200, link
    assert browser.find_elements(By.CSS_SELECTOR, "a.left-prev") and browser.find_elements(By.CSS_SELECTOR, "a.right-next")

    shot = BUILD_DIR / "site-screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    browser.execute_script("document.querySelector(\"mjx-container[display='true']\").scrollIntoView({block: 'center'})")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    elsewhere = _elsewhere(_requests(browser), www[1])
    assert elsewhere == [], f"the page asked other machines for {elsewhere}"


@pytest.mark.slow
def test_search_finds_a_glossary_term(browser, www, book):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    term = "generalisation"
    assert term in {r["english"] for r in glossary_rows()}
    _requests(browser)
    _open(browser, f"{www[1]}/book/search.html?q={term}")
    WebDriverWait(browser, 30).until(lambda d: any(
        "glossary.html" in (a.get_attribute("href") or "")
        for a in d.find_elements(By.CSS_SELECTOR, "#search-results a")))
    assert _elsewhere(_requests(browser), www[1]) == []


@pytest.mark.slow
def test_a_full_book_run_builds_the_site_and_a_failed_site_build_keeps_the_results(tmp_path):
    """``make book``: the site is built after a FULL run; when it cannot be, the chapters' results stay."""
    import subprocess

    def tiny(name: str) -> Path:
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = new_code_cell("SMOKE = None")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [new_markdown_cell(f"# {name[:2]} · A tiny chapter"), params, new_code_cell("print('fine')")]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        return tmp_path / f"{name}.ipynb"

    def book_run(notebook: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bigmodel_utils.book", "run", "--no-html", "--build-dir",
                               str(tmp_path / "b"), str(notebook)], capture_output=True, text=True, timeout=300)

    ok = book_run(tiny("00_tiny"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "site built in" in ok.stdout and (tmp_path / "b" / "site" / "chapters" / "00_tiny.html").is_file()
    assert "-m http.server -d" in ok.stdout and "--bind 127.0.0.1" in ok.stdout
    bad = book_run(tiny("99_nowhere"))  # a chapter in no part: the site cannot be built
    assert bad.returncode == 1 and "1/1 notebooks ok" in bad.stdout
    assert "site build FAILED" in bad.stdout and "add it to bigmodel_utils.site.PARTS" in bad.stdout
    rows = json.loads((tmp_path / "b" / "summary.json").read_text())["chapters"]
    assert [r["name"] for r in rows] == ["00_tiny", "99_nowhere"] and all(r["ok"] for r in rows)
