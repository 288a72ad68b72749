"""The results ledger: what the last FULL run of each chapter measured, tied to the code that measured it.

``make book`` (FULL mode) writes one small JSON file per chapter, ``results/NN_slug.json``, and the file is
committed with the chapter. It holds:

- ``code_sha256``: the sha256 of the chapter's code cells, in order (markdown is not hashed, so a change of
  prose alone needs no new run);
- ``modules``: the sha256 of every ``bigmodel_utils`` module the chapter imports (directly or through another
  module), and ``locks``: the sha256 of the lock files, so ``python -m bigmodel_utils.book stale`` can say which
  chapters a change of a helper or of a pinned version affects;
- when and where it ran (date, cores, CPU model, Python), its wall time, that every code cell ran and none
  failed (FULL-mode assertions included), and every value the chapter ``record()``-ed.

``make test`` fails when a chapter's entry is missing or its code hash differs from the committed notebook's
(``tests/test_ledger.py``), and the README's chapter table is generated from the ledger
(``python -m bigmodel_utils.book readme``) and tested against it. So every number the README states comes
from a FULL run of the code that is committed beside it.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from bigmodel_utils.paths import LOCK_PATH, NODEPS_LOCK_PATH, REPO_ROOT

RESULTS_DIR = REPO_ROOT / "results"
PACKAGE = "bigmodel_utils"
PACKAGE_DIR = REPO_ROOT / PACKAGE
LEDGER_VERSION = 1
#: The runner's own bookkeeping (record(), key_results(), this ledger) and the exercise checkers (check() judges a
#: learner's answer): every chapter imports them, none computes a result with them, so a change to them makes no
#: chapter stale (a new chapter's checkers would otherwise send every chapter back to a FULL run).
BOOKKEEPING = frozenset({f"{PACKAGE}/book.py", f"{PACKAGE}/ledger.py", f"{PACKAGE}/exercises.py"})
BOOKKEEPING_PACKAGES = (f"{PACKAGE}/exercises/",)


def is_bookkeeping(name: str) -> bool:
    """Whether the package file ``name`` (``bigmodel_utils/...``) is bookkeeping: it cannot make a chapter stale."""
    return name in BOOKKEEPING or name.startswith(BOOKKEEPING_PACKAGES)


# --- what a chapter is made of ---------------------------------------------------------------------------


def _cells(path: str | Path) -> list[dict]:
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        return nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable notebook ({exc}): restore it from git (git checkout -- {path})") from exc


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def code_sources(path: str | Path) -> list[str]:
    """The source of every code cell of a notebook, in order."""
    return [_source(c) for c in _cells(path) if c.get("cell_type") == "code"]


def _code_trees(path: str | Path) -> list[ast.Module]:
    """The syntax tree of each code cell (IPython magics and shell lines left out; a cell that is not Python
    skipped)."""
    trees = []
    for source in code_sources(path):
        try:
            trees.append(ast.parse("\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!")))))
        except SyntaxError:
            continue
    return trees


def code_sha256(path: str | Path) -> str:
    """The sha256 of a notebook's code cells: their sources, in order, each ending at a separator line.

    Markdown cells, outputs and metadata are left out, so editing prose does not change it; editing any code
    cell (a comment included), adding, removing or reordering one does.
    """
    digest = hashlib.sha256()
    for source in code_sources(path):
        digest.update(source.rstrip().encode("utf-8"))
        digest.update(b"\n\x1e\n")  # a record separator no cell source contains
    return digest.hexdigest()


def _imports(tree: ast.AST, module: str | None = None, is_package: bool = False) -> set[str]:
    """Every ``bigmodel_utils`` module an AST imports (relative imports resolved against ``module``);
    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and module:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _module_file(name: str, package_dir: Path) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (package_dir / rel.with_suffix(".py") if rel.parts else None, package_dir / rel / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def imported_modules(path: str | Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The files of every ``bigmodel_utils`` module a notebook imports, directly or through other modules
    (and the ``__init__.py`` of each package on the way), sorted. Imports inside functions count too."""
    tree = ast.Module(body=[stmt for cell in _code_trees(path) for stmt in cell.body], type_ignores=[])
    todo = sorted(_imports(tree))
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            file = _module_file(prefix, package_dir)
            if file is None:
                continue  # a name imported from a module, not a module
            seen[prefix] = file
            is_package = file.name == "__init__.py"
            todo.extend(_imports(ast.parse(file.read_text(encoding="utf-8")), prefix, is_package) - set(seen))
    return sorted(set(seen.values()))


def _sha256_file(path: Path) -> str:
    from bigmodel_utils.data.download import sha256_file

    return sha256_file(path)


def module_hashes(files: list[str | Path], package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """``{"bigmodel_utils/models/bert.py": sha256, ...}`` for the given module files (those of the package)."""
    root = package_dir.resolve().parent
    out = {}
    for f in sorted(Path(f).resolve() for f in files):
        name = f.relative_to(root).as_posix() if f.is_relative_to(root) else None
        if f.is_relative_to(package_dir.resolve()) and f.is_file() and not is_bookkeeping(name):
            out[name] = _sha256_file(f)
    return out


def _current_hashes(names: list[str], package_dir: Path = PACKAGE_DIR) -> dict[str, str | None]:
    root = package_dir.resolve().parent
    return {n: (_sha256_file(root / n) if (root / n).is_file() else None) for n in names}


def lock_hashes() -> dict[str, str]:
    """The sha256 of each lock file: the exact package versions a run used."""
    return {p.name: _sha256_file(p) for p in (LOCK_PATH, NODEPS_LOCK_PATH) if p.is_file()}


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python and operating system of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    return {"cores": cores, "cpu": model, "python": sys.version.split()[0], "system": platform.platform(terse=True)}


# --- the executed notebook ----------------------------------------------------------------------------


def executed_cells(executed: str | Path) -> dict[str, int]:
    """How many code cells an executed notebook has, how many ran, and how many show an error."""
    cells = [c for c in _cells(executed) if c.get("cell_type") == "code"
             and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    ran = sum(c.get("execution_count") is not None for c in cells)
    errors = sum(any(o.get("output_type") == "error" for o in c.get("outputs", [])) for c in cells)
    return {"code_cells": len(cells), "ran": ran, "errors": errors}


def count_assertions(path: str | Path) -> dict[str, int]:
    """How many ``assert`` statements a notebook's code has, and how many run in FULL mode only
    (inside an ``if not SMOKE:`` block)."""
    total = full_only = 0
    for tree in _code_trees(path):
        full_blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test).replace(" ", "") == "notSMOKE"]
        inside = {id(a) for block in full_blocks for stmt in block.body for a in ast.walk(stmt) if isinstance(a, ast.Assert)}
        asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        total += len(asserts)
        full_only += sum(id(a) in inside for a in asserts)
    return {"assertions": total, "full_mode_only": full_only}


# --- entries ------------------------------------------------------------------------------------------


def entry_path(notebook: str | Path, results_dir: Path = RESULTS_DIR) -> Path:
    """``results/NN_slug.json`` for ``chapters/NN_slug.ipynb``."""
    return Path(results_dir) / f"{Path(notebook).stem}.json"


def make_entry(notebook: str | Path, executed: str | Path, seconds: float, results: dict[str, Any],
               modules: list[str] | None = None, package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The ledger entry of a successful FULL run of ``notebook`` (its executed copy is ``executed``).

    ``modules`` are the files of the ``bigmodel_utils`` modules the run's kernel imported (the runner learns
    them from :func:`bigmodel_utils.book.track_modules`); without them, every module the notebook's code could
    import (:func:`imported_modules`, an over-estimate) is recorded.

    Raises ValueError if the executed copy shows a cell that did not run or that failed: only a complete,
    passing run goes into the ledger.
    """
    cells = executed_cells(executed)
    if cells["errors"] or cells["ran"] != cells["code_cells"]:
        raise ValueError(f"{Path(executed).name}: {cells['ran']} of {cells['code_cells']} code cells ran and "
                         f"{cells['errors']} failed; only a complete FULL run goes into the ledger")
    if cells["code_cells"] != len(code_sources(notebook)):
        raise ValueError(f"{Path(executed).name} has {cells['code_cells']} code cells but {notebook} has "
                         f"{len(code_sources(notebook))}: the notebook changed during the run; run it again")
    return {
        "ledger_version": LEDGER_VERSION,
        "chapter": Path(notebook).stem,
        "code_sha256": code_sha256(notebook),
        "modules": module_hashes(modules if modules is not None else imported_modules(notebook, package_dir), package_dir),
        "locks": lock_hashes(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "mode": "full",
        "seconds": round(float(seconds), 1),
        "cells": {**cells, **count_assertions(notebook)},
        "all_cells_passed": True,
        "results": results,
    }


def write_entry(entry: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``entry`` to ``results/<chapter>.json`` (through a temporary file: never half-written)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f"{entry['chapter']}.json"
    tmp = target.with_suffix(".json.part")
    tmp.write_text(json.dumps(entry, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


class LedgerError(ValueError):
    """A ledger entry that is missing, unreadable or out of date."""


def read_entry(notebook: str | Path, results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """The ledger entry of ``notebook``; LedgerError (saying what to run) when it is missing or unreadable."""
    path = entry_path(notebook, results_dir)
    number = Path(notebook).stem.split("_")[0]
    if not path.is_file():
        raise LedgerError(f"chapter {number} has no FULL run in the ledger: run `make book CHAPTERS={number}` "
                          f"and commit {path.relative_to(path.parent.parent)}")
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        entry["code_sha256"], entry["results"], entry["seconds"]  # noqa: B018 - the keys every entry has
    except (ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"{path} is not a ledger entry ({exc}): run `make book CHAPTERS={number}` to write it "
                          "again") from exc
    return entry


def check_entry(notebook: str | Path, results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """The entry of ``notebook`` if it was written by a passing FULL run of the notebook's current code;
    LedgerError naming the command to run otherwise."""
    entry = read_entry(notebook, results_dir)
    number = Path(notebook).stem.split("_")[0]
    rel = entry_path(notebook, results_dir)
    rel = rel.relative_to(rel.parent.parent)
    if entry["code_sha256"] != code_sha256(notebook):
        raise LedgerError(f"chapter {number} changed since its last FULL run: run `make book CHAPTERS={number}` "
                          f"and commit {rel}")
    if entry.get("mode") != "full" or not entry.get("all_cells_passed"):
        raise LedgerError(f"{rel} is not from a complete, passing FULL run: run `make book CHAPTERS={number}`")
    return entry


def stale_reasons(notebook: str | Path, results_dir: Path = RESULTS_DIR, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Why ``notebook``'s ledger entry no longer describes its code: its cells, a helper module it imports,
    or a lock file changed (empty list: up to date)."""
    try:
        entry = read_entry(notebook, results_dir)
    except LedgerError as exc:
        return [str(exc).split(":")[0]]
    reasons = []
    if entry["code_sha256"] != code_sha256(notebook):
        reasons.append("its code cells changed")
    then = {name: h for name, h in entry.get("modules", {}).items() if not is_bookkeeping(name)}
    now = _current_hashes(sorted(then), package_dir)
    changed = sorted(m for m in then if now.get(m) != then.get(m))
    if changed:
        reasons.append("helper modules changed: " + ", ".join(changed))
    locks, old_locks = lock_hashes(), entry.get("locks", {})
    if locks != old_locks:
        reasons.append("the lock files changed: " + ", ".join(sorted(k for k in locks.keys() | old_locks.keys()
                                                                      if locks.get(k) != old_locks.get(k))))
    return reasons


def chapters() -> list[Path]:
    """The chapter notebooks (not the solutions), in order: the book's runner's list."""
    from bigmodel_utils.book import chapter_paths

    return chapter_paths()


# --- numbers in the prose ----------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.$\\{^_-])(\d[\d,]*(?:\.\d+)?(?:\s?[×x]\s?10[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)?\s?(?:%|×|x\b)?)")


def prose_numbers(path: str | Path) -> list[tuple[int, str, str]]:
    """Every number in a notebook's Markdown cells outside code spans and formulas: ``(cell index, number, the
    sentence around it)``. For the author's check that no prose states a result that no cell prints or asserts
    (``python -m bigmodel_utils.book numbers 07``): each must be a constant of the set-up, a cited figure, or a
    value a FULL-mode assertion pins."""
    found = []
    for i, cell in enumerate(_cells(path)):
        if cell.get("cell_type") != "markdown":
            continue
        text = re.sub(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)", " ", _source(cell), flags=re.S)  # code, maths, links
        text = re.sub(r"(?m)^#+ .*$", " ", text)  # headings
        text = re.sub(r"\b(?:[Aa]rticles?|seeds?)\s+00\d(?:\s*(?:,|and|or)\s*00\d)*|\b00\d\s*§\s*[\d.–-]+(?:,\s*§?[\d.–-]+)*|§\s*[\d.–-]+"
                      r"|\*\*\d\d\.\d\*\*|\b(?:[Cc]hapters?|[Ee]xercises?)\s+[\d.]+(?:\s*(?:,|–|-|and|or|to)\s*[\d.]+)*", " ", text)
        for sentence in re.split(r"(?<=[.!?:;])\s+|\n\s*[-*|]\s*|\n\n", text):
            for m in _NUMBER.finditer(sentence):
                number = m.group(1).strip()
                found.append((i, number, " ".join(sentence.split())[:160]))
    return found


# --- the README's chapter table -------------------------------------------------------------------------

README_BEGIN = "<!-- chapters table: generated by `python -m bigmodel_utils.book readme` from results/; do not edit -->"
README_END = "<!-- end of the generated chapters table -->"
KEY_RESULTS = "key results"  # the record() key of a chapter's one-line summary for the README


def _title(notebook: Path) -> str:
    """The notebook's ``# NN · Title`` heading without its number (the runner reads the heading)."""
    from bigmodel_utils.book import _title as heading

    return re.sub(r"^\d\d\s*[·.:-]\s*", "", heading(notebook))


def _seed_topics(notebook: Path) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return nb.get("metadata", {}).get("bigmodel", {}).get("seed_topics", "")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def first_run_extra_seconds(results: dict[str, Any]) -> float | None:
    """What a first run, with nothing cached, adds to the ledger run's wall time: the chapter's cacheable training
    (``cacheable_seconds``) less what this run trained itself (``trained_seconds``; without it, all of it unless
    ``cache_used``). ``None`` for a chapter that caches nothing."""
    cached = results.get("cacheable_seconds")
    if cached is None:
        return None
    trained = results.get("trained_seconds", 0.0 if results.get("cache_used") else cached)
    return max(0.0, float(cached) - float(trained))


def time_cell(entry: dict[str, Any]) -> str:
    """The README's time for a chapter: the ledger run's wall time, and what a first run costs more (or a later
    run less) where the chapter caches expensive work (it records ``cacheable_seconds``, all its cacheable training
    as it took when it ran, ``cache_used`` and, where part of it can be cached while the rest runs,
    ``trained_seconds``: the training this run did)."""
    wall = float(entry["seconds"])
    results = entry["results"]
    extra = first_run_extra_seconds(results)  # one rule for this table and _build/timings.md
    if extra is None:
        return _minutes(wall)
    cached = float(results["cacheable_seconds"])
    trained = cached - extra  # the training this run did
    if not trained:
        return f"{_minutes(wall)} + {_minutes(cached)} the first time (its training is cached)"
    if trained >= cached:
        return f"{_minutes(wall)}, of which {_minutes(cached)} training that later runs load from the cache"
    return (f"{_minutes(wall)}, of which {_minutes(trained)} training that later runs load from the cache; "
            f"a first run adds {_minutes(cached - trained)} more (its other training was cached)")


def machines_text(machines: dict[str, dict]) -> str:
    """Where the FULL runs ran, from ``{chapter number: entry["machine"]}``: "2 cores (CPU)" when every chapter ran on
    one machine, else the most used machine, then the chapters that ran elsewhere, e.g. "2 cores (Intel Xeon);
    chapter 13 on 2 cores (AMD EPYC)"."""
    groups: dict[str, list[str]] = {}
    for number, m in sorted(machines.items()):
        if not m:
            continue  # an entry without a machine record says nothing about where it ran
        m = m if isinstance(m, dict) else {"cpu": str(m)}
        groups.setdefault(f"{m.get('cores', '?')} cores ({m.get('cpu', '?')})", []).append(number)
    if not groups:
        return "an unrecorded machine"
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    text = ordered[0][0]
    for label, numbers in ordered[1:]:
        text += f"; chapter{'s' if len(numbers) > 1 else ''} {', '.join(numbers)} on {label}"
    return text


def readme_table(results_dir: Path = RESULTS_DIR, notebooks: list[Path] | None = None) -> str:
    """The README's chapter table, from the ledger: chapter, seed topics, FULL-mode time and key results."""
    notebooks = chapters() if notebooks is None else notebooks
    lines = [README_BEGIN,
             "| # | chapter | seed topics it covers | full mode, time | key results (full mode) |",
             "|---|---|---|---|---|"]
    total = 0.0
    machines = {}
    for nb in notebooks:
        entry = read_entry(nb, results_dir)
        total += float(entry["seconds"])
        machines[nb.stem[:2]] = entry.get("machine", {})
        key = entry["results"].get(KEY_RESULTS, "–")
        link = f"[{_title(nb)}](chapters/{nb.name})"
        lines.append(f"| {nb.stem[:2]} | {link} | {_seed_topics(nb)} | {time_cell(entry)} | {key} |")
    lines.append("")
    lines.append(f"Times and results are those of each chapter's last FULL run, recorded in [`results/`](results/) "
                 f"on {machines_text(machines)}: {total / 60:.1f} minutes for the chapters in all.")
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(readme: Path = REPO_ROOT / "README.md", results_dir: Path = RESULTS_DIR,
                  notebooks: list[Path] | None = None) -> bool:
    """Rewrite the generated table in ``readme`` from the ledger; True if the file changed."""
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} has no generated chapters table: put the lines\n{README_BEGIN}\n{README_END}\n"
                         "where it belongs")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + readme_table(results_dir, notebooks) + tail
    if new != text:
        readme.write_text(new, encoding="utf-8")
        return True
    return False


def readme_is_current(readme: Path = REPO_ROOT / "README.md", results_dir: Path = RESULTS_DIR) -> bool:
    """True when the README's chapter table is exactly what the ledger generates."""
    text = readme.read_text(encoding="utf-8")
    return readme_table(results_dir) in text
