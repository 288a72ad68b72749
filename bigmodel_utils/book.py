"""Executing the book: ``python -m bigmodel_utils.book run [--smoke] [CHAPTER ...]``.

Each chapter runs in its own papermill process with a wall-clock limit (the kernel is killed with
it), writes its executed copy to ``_build/notebooks/`` and an HTML rendering to ``_build/html/``.
A failing chapter is reported with its failing cell and the run goes on with the others; the exit
status is non-zero if any failed. The summary table (``_build/summary.md`` and ``.json``) lists
each chapter's wall time and the key results it recorded with :func:`record`::

    from bigmodel_utils.book import record
    record("test_accuracy", acc)   # in a chapter: shows up in the summary table

A FULL run ends by building the book's web site from every executed chapter (:mod:`bigmodel_utils.site`,
``_build/site/index.html``). A successful FULL run of a chapter also writes its entry in the results ledger
(``results/NN_slug.json``, :mod:`bigmodel_utils.ledger`), from which ``python -m bigmodel_utils.book readme`` generates the README's table;
``python -m bigmodel_utils.book stale`` lists the chapters whose code, helpers or locks changed since their entry.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_utils.paths import BUILD_DIR, CHAPTERS_DIR, SOLUTIONS_DIR

RESULTS_ENV = "BIGMODEL_RESULTS"
DEFAULT_TIMEOUT = {True: 900, False: 1800}  # seconds per notebook: smoke, full


# --- recording results from inside a chapter --------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and callable(value.item):  # NumPy / TensorFlow scalars
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a recorded result must be finite, got {value}")
        return value
    raise TypeError(f"record() takes numbers, strings or booleans, got {type(value).__name__}")


def record(key: str, value: Any) -> None:
    """Record one key result of the running chapter for the book's summary table.

    Outside the runner (a learner in JupyterLab) this only checks the key and the value. Under the runner,
    ``$BIGMODEL_RESULTS`` names a JSON file that collects every recorded key. It returns nothing, so that a
    ``record(...)`` at the end of a cell does not print a stray value under the cell's real output.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("record() needs a non-empty string key")
    value = _jsonable(value)
    path = os.environ.get(RESULTS_ENV)
    if path:
        p = Path(path)
        data = json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
        data[key] = value
        tmp = p.with_suffix(".part")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(p)


def key_results(text: str) -> None:
    """A chapter's key results in one line, built from the values it just computed: printed, and recorded for
    the README's chapter table (which ``python -m bigmodel_utils.book readme`` generates from the ledger)."""
    from bigmodel_utils.ledger import KEY_RESULTS

    if not isinstance(text, str) or not text.strip():
        raise ValueError("key_results() needs a one-line sentence built from the chapter's results")
    if "\n" in text or "|" in text:
        raise ValueError("key_results() goes into a Markdown table: one line, no '|'")
    import re

    text = re.sub(r"(?<![\d.])0(?:\.0*)?e[+-]0+(?![\d.])", "0", text)  # Python writes 0e+00 for zero
    text = re.sub(r"(\d)e([+-])0+(\d)", r"\1e\2\3", text)  # Python writes 5e-07; a reader writes 5e-7
    print(text)
    record(KEY_RESULTS, text)  # returns nothing, so that a notebook does not show the line twice


def modules_file(results_file: str | Path) -> Path:
    """Where the runner's kernel lists the ``bigmodel_utils`` modules it imported: beside its results file."""
    results_file = Path(results_file)
    return results_file.with_name(results_file.name.replace(".results.json", "") + ".modules.json")


_tracking: list[Any] = []


def track_modules() -> None:
    """Under the runner (``$BIGMODEL_RESULTS`` set, inside IPython): after every cell, write the files of the
    ``bigmodel_utils`` modules the kernel has imported so far, so that the ledger knows which helpers a chapter
    really used. ``setup_notebook()`` calls it; elsewhere it does nothing."""
    path = os.environ.get(RESULTS_ENV)
    if not path or _tracking:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    target = modules_file(path)

    def dump(*_: Any) -> None:
        files = sorted({str(Path(m.__file__).resolve()) for name, m in list(sys.modules.items())
                        if (name == "bigmodel_utils" or name.startswith("bigmodel_utils."))
                        and getattr(m, "__file__", None)})
        tmp = target.with_suffix(".part")
        tmp.write_text(json.dumps(files, indent=0), encoding="utf-8")
        tmp.replace(target)

    shell.events.register("post_run_cell", dump)
    _tracking.append(dump)
    dump()


# --- finding chapters ---------------------------------------------------------------------------


def chapter_paths(include_solutions: bool = False) -> list[Path]:
    """Every chapter notebook in order, then (optionally) every solutions notebook."""
    paths = sorted(p for p in CHAPTERS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if include_solutions:
        paths += sorted(p for p in SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
    return paths


def resolve_chapters(specs: list[str], include_solutions: bool = False) -> list[Path]:
    """Turn ``["00", "03_data", "chapters/05_cnn.ipynb"]`` into notebook paths; unknown -> ValueError."""
    if not specs:
        return chapter_paths(include_solutions)
    every = chapter_paths(include_solutions=True)
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.suffix == ".ipynb" and p.is_file():
            out.append(p.resolve())
            continue
        matches = [c for c in every if c.parent == CHAPTERS_DIR and (c.stem == spec or c.stem.split("_")[0] == spec)]
        if include_solutions:
            matches += [c for c in every if c.parent == SOLUTIONS_DIR and (c.stem == spec or c.stem.split("_")[0] == spec)]
        if not matches:
            known = ", ".join(c.stem for c in chapter_paths())
            raise ValueError(f"no chapter matches {spec!r}; give a number ('03'), a name or a path. Chapters: {known}")
        out.extend(matches)
    return out


# --- running one notebook -------------------------------------------------------------------------


@dataclass
class ChapterResult:
    """The outcome of executing one notebook."""

    name: str
    path: str
    ok: bool
    seconds: float
    smoke: bool
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failing_cell: int | None = None
    output: str | None = None
    modules: list[str] | None = None  # the bigmodel_utils files the kernel imported (None: not known)

    def describe(self) -> str:
        if self.ok:
            return f"ok in {self.seconds:.1f} s"
        where = f" in cell {self.failing_cell}" if self.failing_cell is not None else ""
        return f"FAILED{where} after {self.seconds:.1f} s: {self.error}"


def _first_error(notebook_path: Path) -> tuple[int | None, str | None]:
    """(index of the first code cell with an error output, 'Name: message') from an executed notebook."""
    import nbformat

    try:
        nb = nbformat.read(notebook_path, as_version=4)
    except Exception:  # noqa: BLE001 - a missing or half-written notebook has no cell to blame
        return None, None
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue  # count code cells as they are in the source notebook
        code_index += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                if out.get("ename") == "PapermillExecutionError":
                    continue
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return code_index, f"{out.get('ename')}: {out.get('evalue')} (code cell {code_index}: {first_line[:60]!r})"
    return None, None


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill papermill and everything it started. jupyter_client starts each kernel in a session of
    its own, so killing papermill's process group alone would leave the kernel running."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=10)
    proc.wait()


def run_notebook(
    path: str | Path,
    output_dir: str | Path = BUILD_DIR / "notebooks",
    *,
    smoke: bool,
    timeout: float | None = None,
    parameters: dict[str, Any] | None = None,
    kernel: str = "python3",
) -> ChapterResult:
    """Execute one notebook with papermill in a child process, within ``timeout`` seconds.

    The notebook runs in its own folder; ``SMOKE`` is passed both as a papermill parameter and as
    ``$BIGMODEL_SMOKE``. On a timeout the whole process group (papermill and its kernel) is killed.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    timeout = DEFAULT_TIMEOUT[bool(smoke)] if timeout is None else timeout
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out_nb = output_dir / path.name
    results_file = output_dir / f"{path.stem}.results.json"
    for stale in (out_nb, results_file, modules_file(results_file)):
        stale.unlink(missing_ok=True)

    params = {"SMOKE": bool(smoke), **(parameters or {})}
    cmd = [sys.executable, "-m", "papermill", str(path), str(out_nb), "--kernel", kernel, "--cwd", str(path.parent),
           "--no-progress-bar", "--log-level", "ERROR"]
    for key, value in params.items():
        cmd += ["-p", key, str(value)] if isinstance(value, (bool, int, float)) else ["-r", key, str(value)]
    env = dict(os.environ, BIGMODEL_SMOKE="1" if smoke else "0", **{RESULTS_ENV: str(results_file)})
    env.setdefault("PYTHONUNBUFFERED", "1")

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        output, timed_out = (proc.stdout.read() if proc.stdout else ""), True
    seconds = time.perf_counter() - start

    results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.exists() else {}
    modules = json.loads(modules_file(results_file).read_text(encoding="utf-8")) if modules_file(results_file).exists() else None
    name = path.stem if path.parent.name != "solutions" else f"solutions/{path.stem}"
    if timed_out:
        cell, _ = _first_error(out_nb)
        return ChapterResult(name, str(path), False, seconds, smoke, results,
                             f"timed out after {timeout:.0f} s (raise --timeout, or run it with --smoke)", cell, output)
    if proc.returncode != 0:
        cell, err = _first_error(out_nb)
        if err is None:
            tail = [line for line in (output or "").strip().splitlines() if line.strip()][-1:] or ["no output"]
            err = f"papermill exited with status {proc.returncode}: {tail[0]}"
        return ChapterResult(name, str(path), False, seconds, smoke, results, err, cell, output)
    return ChapterResult(name, str(path), True, seconds, smoke, results, output=output, modules=modules)


# --- HTML, summary, index ---------------------------------------------------------------------------


def render_html(executed: str | Path, html_dir: str | Path, name: str | None = None) -> Path:
    """Render an executed notebook to a standalone HTML page ``html_dir/name`` (default: its stem)."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = Path(executed)
    html_dir = Path(html_dir)
    html_dir.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target = html_dir / (name or f"{executed.stem}.html")
    target.write_text(body, encoding="utf-8")
    return target


def _title(path: Path) -> str:
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001
        return path.stem
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_summary(results: list[ChapterResult], build_dir: str | Path = BUILD_DIR) -> tuple[Path, Path]:
    """Merge ``results`` into ``summary.json`` and rewrite ``summary.md`` and ``html/index.html``."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = build_dir / "summary.json", build_dir / "summary.md"
    rows: dict[str, dict] = {}
    if json_path.exists():
        try:
            rows = {r["name"]: r for r in json.loads(json_path.read_text(encoding="utf-8"))["chapters"]}
        except (json.JSONDecodeError, KeyError, TypeError):
            rows = {}
    for r in results:
        row = asdict(r)
        row.pop("output", None)
        row.pop("modules", None)
        row["title"] = _title(Path(r.path))
        row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        rows[r.name] = row
    ordered = [rows[k] for k in sorted(rows)]
    meta = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    json_path.write_text(json.dumps({"machine": meta, "chapters": ordered}, indent=1, ensure_ascii=False), encoding="utf-8")

    lines = ["| chapter | mode | status | wall time | key results |", "|---|---|---|---|---|"]
    for r in ordered:
        keys = "; ".join(f"{k} = {_fmt(v)}" for k, v in r["results"].items()) or "–"
        status = "ok" if r["ok"] else f"failed: {r['error']}"
        lines.append(f"| {r['name']} {r['title']} | {'smoke' if r['smoke'] else 'full'} | {status} | {r['seconds']:.0f} s | {keys} |")
    total = sum(r["seconds"] for r in ordered)
    lines.append(f"\nTotal {total / 60:.1f} min on {meta['cpu_count']} CPU cores, Python {meta['python']}.")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write_index(ordered, build_dir / "html")
    return md_path, json_path


def _write_index(rows: list[dict], html_dir: Path) -> Path:
    """The book's front page: every chapter in order with its mode, wall time and key results, the total,
    and the glossary (English, the seed articles' Chinese term, chapter, note)."""
    import html

    from bigmodel_utils.glossary import glossary_rows

    esc = html.escape
    html_dir.mkdir(parents=True, exist_ok=True)
    chapter_rows = []
    for r in rows:
        stem = Path(r["path"]).stem
        link = f"{'solutions-' if r['name'].startswith('solutions/') else ''}{stem}.html"
        keys = "; ".join(f"{k} = {_fmt(v)}" for k, v in r["results"].items()) or "–"
        status = "" if r["ok"] else f" <strong>failed: {esc(str(r['error']))}</strong>"
        chapter_rows.append(
            f"<tr><td><a href='{esc(link)}'>{esc(r['title'])}</a>{status}</td>"
            f"<td>{'smoke' if r['smoke'] else 'full'}</td><td style='text-align:right'>{r['seconds']:.0f} s</td>"
            f"<td><small>{esc(keys)}</small></td></tr>"
        )
    total = sum(r["seconds"] for r in rows)
    terms = "".join(
        f"<tr><td>{esc(t['english'])}</td><td lang='zh'>{esc(t['chinese'])}</td><td>{t['chapter']}</td>"
        f"<td><small>{esc(t['note'] or '')}</small></td></tr>"
        for t in sorted(glossary_rows(), key=lambda t: (t["chapter"], t["english"].lower()))
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>bigmodel: the book</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em;vertical-align:top;"
        "text-align:left}</style></head>"
        "<body><h1>bigmodel</h1><p>From “what is a large model?” to a served BERT, on a laptop CPU.</p>"
        "<h2>Chapters</h2><table><tr><th>chapter</th><th>mode</th><th>wall time</th><th>key results</th></tr>"
        f"{''.join(chapter_rows)}</table><p>Total {total / 60:.1f} min.</p>"
        "<h2 id='glossary'>Glossary</h2><table><tr><th>English</th><th>Chinese (the seed articles)</th>"
        f"<th>chapter</th><th>note</th></tr>{terms}</table></body></html>"
    )
    target = html_dir / "index.html"
    target.write_text(page, encoding="utf-8")
    return target


# --- the command line ---------------------------------------------------------------------------------


def run_book(
    chapters: list[Path],
    *,
    smoke: bool,
    timeout: float | None = None,
    build_dir: str | Path = BUILD_DIR,
    html: bool = True,
    ledger_dir: str | Path | None = None,
) -> list[ChapterResult]:
    """Run ``chapters`` one after another, printing a progress line for each; never stops early.

    A chapter that passes in FULL mode gets its entry in the results ledger: ``ledger_dir`` if given (every
    chapter, solutions excepted), else ``results/`` for the book's own chapters only.
    """
    from bigmodel_utils import ledger

    build_dir = Path(build_dir)
    results = []
    for i, path in enumerate(chapters, 1):
        sub = "solutions" if path.parent.name == "solutions" else "notebooks"
        label = f"[{i}/{len(chapters)}] {'solutions/' if sub == 'solutions' else ''}{path.stem}"
        print(f"{label} ... running ({'smoke' if smoke else 'full'})", flush=True)
        code_before = ledger.code_sha256(path)
        r = run_notebook(path, build_dir / sub, smoke=smoke, timeout=timeout)
        if html and (build_dir / sub / path.name).exists():
            try:
                prefix = "solutions-" if sub == "solutions" else ""
                render_html(build_dir / sub / path.name, build_dir / "html", f"{prefix}{path.stem}.html")
            except Exception as exc:  # noqa: BLE001 - a rendering problem must not hide the run's result
                print(f"    (HTML rendering failed: {exc})")
        print(f"{label} ... {r.describe()}", flush=True)
        in_ledger = sub == "notebooks" and (ledger_dir is not None or path.parent == CHAPTERS_DIR)
        if r.ok and not smoke and in_ledger:
            try:
                entry = ledger.make_entry(path, build_dir / sub / path.name, r.seconds, r.results, r.modules)
                if entry["code_sha256"] != code_before:
                    raise ValueError(f"{path.name}'s code changed while it ran: run it again")
                written = ledger.write_entry(entry, Path(ledger_dir) if ledger_dir is not None else ledger.RESULTS_DIR)
                print(f"{label} ... ledger entry {written}", flush=True)
            except ValueError as exc:
                r.ok, r.error = False, f"not written to the ledger: {exc}"
                print(f"{label} ... {r.describe()}", flush=True)
        results.append(r)
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.book", description="Execute the book's chapters.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters with papermill into _build/")
    run.add_argument("chapters", nargs="*", metavar="CHAPTER", help="numbers ('03'), names or paths; default: all")
    run.add_argument("--smoke", action="store_true", help="SMOKE mode: small data, few epochs")
    run.add_argument("--solutions", action="store_true", help="also run the worked solutions")
    run.add_argument("--timeout", type=float, default=None, help="seconds per notebook (default 1800 full, 900 smoke)")
    run.add_argument("--build-dir", default=str(BUILD_DIR), help="output folder (default _build/)")
    run.add_argument("--no-html", action="store_true", help="skip the HTML rendering")
    run.add_argument("--no-site", action="store_true",
                     help="after a FULL run, do not build the book's site (_build/site/; `make site` builds it)")
    run.add_argument("--stale", action="store_true",
                     help="run only the chapters whose code, helper modules or locks changed since their ledger entry")
    stale = sub.add_parser("stale", help="list the chapters whose ledger entry is missing or out of date, and why")
    stale.add_argument("chapters", nargs="*", metavar="CHAPTER", help="numbers ('03'), names or paths; default: all")
    numbers = sub.add_parser("numbers", help="list every number in the chapters' Markdown, for checking that each "
                             "is a set-up constant, a cited figure or a value a cell prints or asserts")
    numbers.add_argument("chapters", nargs="*", metavar="CHAPTER", help="numbers ('03'), names or paths; default: all")
    readme = sub.add_parser("readme", help="write the README's chapter table from the ledger (results/)")
    readme.add_argument("--check", action="store_true", help="only check that the README's table equals the ledger")
    args = parser.parse_args(argv)
    if args.command == "readme":
        return _readme_command(args.check)
    try:
        chapters = resolve_chapters(args.chapters, include_solutions=getattr(args, "solutions", False))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "numbers":
        from bigmodel_utils.ledger import prose_numbers

        for p in chapters:
            for cell, number, sentence in prose_numbers(p):
                print(f"{p.stem[:2]} cell {cell:3d}  {number:>12}  {sentence}")
        return 0
    if args.command == "stale" or args.stale:
        from bigmodel_utils.ledger import stale_reasons

        reasons = {p: stale_reasons(p) for p in chapters if p.parent == CHAPTERS_DIR}
        chapters = [p for p, why in reasons.items() if why]
        for p in chapters:
            print(f"{p.stem}: {'; '.join(reasons[p])}")
        if args.command == "stale":
            if chapters:
                print(f"\n{len(chapters)} chapter(s) to run in FULL mode: make book CHAPTERS=\"{' '.join(p.stem[:2] for p in chapters)}\"")
            else:
                print("every chapter's ledger entry is up to date")
            return 1 if chapters else 0
        if not chapters:
            print("every chapter's ledger entry is up to date: nothing to run")
            return 0
    if not chapters:
        print("error: no chapters found in chapters/", file=sys.stderr)
        return 2
    results = run_book(chapters, smoke=args.smoke, timeout=args.timeout, build_dir=args.build_dir, html=not args.no_html)
    md, js = write_summary(results, args.build_dir)
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} notebooks ok; summary: {md} and {js}")
    for r in failed:
        print(f"FAILED {r.name}: {r.describe()}")
    site_ok = True
    if not args.smoke and not args.no_site:
        site_ok = _site_command(Path(args.build_dir))
    return 1 if failed or not site_ok else 0


def _site_command(build_dir: Path) -> bool:
    """After a FULL run: the book's site from every executed chapter in ``build_dir/notebooks``. A failure is
    reported and never touches the chapters' results, summary or ledger entries, which are written already."""
    from bigmodel_utils.site import build_site

    print(f"\nbuilding the book's site from {build_dir / 'notebooks'} ...", flush=True)
    try:
        result = build_site(build_dir / "notebooks", build_dir / "site")
    except Exception as exc:  # noqa: BLE001 - the chapters' results stand whatever happens here
        print(f"site build FAILED: {type(exc).__name__}: {exc}")
        ok = False
    else:
        print(result.describe())
        ok = result.ok and not result.external
    if not ok:
        print("(the chapters' results, summary and ledger entries are kept; fix the site and run `make site`)")
    return ok


def _readme_command(check: bool) -> int:
    from bigmodel_utils.ledger import LedgerError, readme_is_current, update_readme

    try:
        if check:
            if readme_is_current():
                print("README.md's chapter table equals the ledger")
                return 0
            print("README.md's chapter table differs from the ledger: run `python -m bigmodel_utils.book readme`",
                  file=sys.stderr)
            return 1
        changed = update_readme()
    except (LedgerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("README.md's chapter table " + ("rewritten from the ledger" if changed else "already equals the ledger"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
