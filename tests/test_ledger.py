"""The results ledger: every chapter's last FULL run is committed in results/, tied to the chapter's code; the
README's chapter table is generated from it."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bigmodel_utils import ledger
from bigmodel_utils.book import key_results, run_book
from bigmodel_utils.paths import REPO_ROOT

CHAPTERS = ledger.chapters()


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_has_a_ledger_entry_from_its_current_code(notebook):
    """A chapter whose code changed since its last FULL run fails here, with the command to run."""
    try:
        entry = ledger.check_entry(notebook)
    except ledger.LedgerError as exc:
        pytest.fail(str(exc))
    assert entry["all_cells_passed"] and entry["cells"]["errors"] == 0
    assert entry["cells"]["ran"] == entry["cells"]["code_cells"] == len(ledger.code_sources(notebook))
    assert entry["results"].get(ledger.KEY_RESULTS), f"{notebook.stem} records no key results for the README"


def test_the_readme_table_is_the_ledger():
    assert ledger.readme_is_current(), (
        "README.md's chapter table differs from results/: run `python -m bigmodel_utils.book readme` and commit it")


def _notebook(path, *code, title="# 99 · A tiny chapter", prose="Some prose with a number: 0.5."):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["bigmodel"] = {"seed_topics": "nothing (000 §0)"}
    params = new_code_cell("SMOKE = None\nSEED = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(title), params, new_markdown_cell(prose)] + [new_code_cell(c) for c in code]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny chapter run in FULL mode by the book's runner, with its ledger entry in a folder of its own."""
    root = tmp_path_factory.mktemp("ledger")
    nb = _notebook(
        root / "99_tiny.ipynb",
        "from bigmodel_utils.notebook import setup_notebook\nnb = setup_notebook(seed=SEED, smoke=SMOKE, tensorflow=False)",
        "from bigmodel_utils.scale import mlp_params\nfrom bigmodel_utils.book import key_results, record\n"
        "n = mlp_params([4, 3, 2])\nrecord('params', n)\nrecord('cacheable_seconds', 120.0)\nrecord('cache_used', True)\n"
        "key_results(f'an MLP of {n} parameters')",
        "if not SMOKE:\n    assert n == 23",
    )
    results = run_book([nb], smoke=False, build_dir=root / "build", html=False, ledger_dir=root / "results")
    assert results[0].ok, results[0].describe()
    return root, nb


def test_a_full_run_writes_its_entry(tiny_run):
    root, nb = tiny_run
    entry = json.loads((root / "results" / "99_tiny.json").read_text())
    assert entry["code_sha256"] == ledger.code_sha256(nb) and entry["mode"] == "full" and entry["all_cells_passed"]
    assert entry["results"] == {"params": 23, "cacheable_seconds": 120.0, "cache_used": True,
                                ledger.KEY_RESULTS: "an MLP of 23 parameters"}
    assert entry["cells"] == {"code_cells": 4, "ran": 4, "errors": 0, "assertions": 1, "full_mode_only": 1}
    # the helpers the kernel really imported, not every module the package has
    assert "bigmodel_utils/scale.py" in entry["modules"] and "bigmodel_utils/notebook.py" in entry["modules"]
    assert "bigmodel_utils/models/gpt.py" not in entry["modules"] and "bigmodel_utils/ledger.py" not in entry["modules"]
    assert set(entry["locks"]) == {"requirements.lock", "requirements-nodeps.lock"}
    assert entry["machine"]["cores"] >= 1 and entry["date"].endswith("Z")
    assert ledger.check_entry(nb, root / "results") == entry


@pytest.mark.slow
def test_a_smoke_run_or_a_failed_run_writes_nothing(tmp_path):
    ok = _notebook(tmp_path / "98_ok.ipynb", "x = 1")
    bad = _notebook(tmp_path / "97_bad.ipynb", "if not SMOKE:\n    assert 1 == 2, 'a FULL-mode assertion fails'")
    run_book([ok], smoke=True, build_dir=tmp_path / "b", html=False, ledger_dir=tmp_path / "results")
    (r,) = run_book([bad], smoke=False, build_dir=tmp_path / "b", html=False, ledger_dir=tmp_path / "results")
    assert not r.ok and "a FULL-mode assertion fails" in r.error
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_editing_code_fails_the_check_and_editing_prose_does_not(tiny_run, tmp_path):
    root, nb = tiny_run
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    copy = tmp_path / nb.name
    shutil.copy(nb, copy)
    before = ledger.code_sha256(copy)

    doc = nbformat.read(copy, as_version=4)
    doc.cells[2].source = "Prose rewritten, another number: 0.7."
    doc.cells[0].source += "\n\n**Time on a laptop CPU:** a second."
    nbformat.write(doc, copy)
    assert ledger.code_sha256(copy) == before
    ledger.check_entry(copy, results)  # markdown only: still current
    assert ledger.stale_reasons(copy, results) == []

    doc.cells[-1].source += "  # a comment is code too"
    nbformat.write(doc, copy)
    with pytest.raises(ledger.LedgerError, match=r"chapter 99 changed since its last FULL run: run `make book CHAPTERS=99`"):
        ledger.check_entry(copy, results)
    assert ledger.stale_reasons(copy, results) == ["its code cells changed"]


def test_a_missing_or_broken_entry_says_what_to_run(tiny_run, tmp_path):
    _, nb = tiny_run
    with pytest.raises(ledger.LedgerError, match=r"no FULL run in the ledger: run `make book CHAPTERS=99`"):
        ledger.check_entry(nb, tmp_path)
    (tmp_path / "99_tiny.json").write_text("{not json")
    with pytest.raises(ledger.LedgerError, match="is not a ledger entry"):
        ledger.check_entry(nb, tmp_path)


def test_stale_names_a_changed_helper_and_a_changed_lock(tiny_run, tmp_path):
    root, nb = tiny_run
    entry = json.loads((root / "results" / "99_tiny.json").read_text())
    entry["modules"]["bigmodel_utils/scale.py"] = "0" * 64
    entry["modules"]["bigmodel_utils/book.py"] = "0" * 64  # the runner's bookkeeping: computes no result
    entry["modules"]["bigmodel_utils/exercises/ch05.py"] = "0" * 64  # a checker judges answers, computes no result
    entry["locks"]["requirements.lock"] = "0" * 64
    (tmp_path / "99_tiny.json").write_text(json.dumps(entry))
    reasons = ledger.stale_reasons(nb, tmp_path)
    assert reasons == ["helper modules changed: bigmodel_utils/scale.py", "the lock files changed: requirements.lock"]
    ledger.check_entry(nb, tmp_path)  # the test fails on changed code only; `stale` shows the rest


def test_make_entry_refuses_an_incomplete_run(tiny_run, tmp_path):
    root, nb = tiny_run
    executed = nbformat.read(root / "build" / "notebooks" / nb.name, as_version=4)
    executed.cells[-1].execution_count = None
    nbformat.write(executed, tmp_path / "x.ipynb")
    with pytest.raises(ValueError, match="3 of 4 code cells ran"):
        ledger.make_entry(nb, tmp_path / "x.ipynb", 1.0, {})


def test_readme_table_from_entries(tiny_run, tmp_path):
    root, nb = tiny_run
    table = ledger.readme_table(root / "results", [nb])
    row = next(line for line in table.splitlines() if line.startswith("| 99 |"))
    assert row.startswith("| 99 | [A tiny chapter](chapters/99_tiny.ipynb) | nothing (000 §0) | ")
    assert "+ 2.0 min the first time (its training is cached)" in row and row.endswith("| an MLP of 23 parameters |")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Book\n\n{ledger.README_BEGIN}\nold table\n{ledger.README_END}\n\nMore.\n")
    assert ledger.update_readme(readme, root / "results", [nb]) is True
    text = readme.read_text()
    assert "old table" not in text and text.endswith("\n\nMore.\n") and table in text
    assert ledger.update_readme(readme, root / "results", [nb]) is False


def test_time_cell():
    assert ledger.time_cell({"seconds": 42, "results": {}}) == "42 s"
    assert ledger.time_cell({"seconds": 600, "results": {"cacheable_seconds": 450, "cache_used": False}}) == (
        "10.0 min, of which 7.5 min training that later runs load from the cache")
    assert ledger.time_cell({"seconds": 600, "results": {"cacheable_seconds": 450, "cache_used": True}}) == (
        "10.0 min + 7.5 min the first time (its training is cached)")
    # part trained, part loaded (chapter 13 once re-trained its GPT but loaded its scaling sweep): never "of which"
    # more than the run took
    assert ledger.time_cell({"seconds": 576, "results": {"cacheable_seconds": 801, "cache_used": False,
                                                          "trained_seconds": 428}}) == (
        "9.6 min, of which 7.1 min training that later runs load from the cache; a first run adds 6.2 min more "
        "(its other training was cached)")
    # training recorded as longer than the cacheable total (rounding): all of it was this run's, nothing to add
    assert ledger.time_cell({"seconds": 600, "results": {"cacheable_seconds": 450, "trained_seconds": 451}}) == (
        "10.0 min, of which 7.5 min training that later runs load from the cache")
    # the README's column and _build/timings.md's first-time column follow one rule
    for results in ({"cacheable_seconds": 450, "cache_used": True}, {"cacheable_seconds": 801, "trained_seconds": 428}):
        extra = ledger.first_run_extra_seconds(results)
        assert f"{ledger._minutes(extra)} " in ledger.time_cell({"seconds": 600, "results": results})


def test_key_results_is_one_table_cell(monkeypatch, capsys):
    monkeypatch.delenv("BIGMODEL_RESULTS", raising=False)
    assert key_results("accuracy 0.98") is None and capsys.readouterr().out == "accuracy 0.98\n"
    key_results(f"ONNX = Keras to {5e-7:.0e}, {3e-10:.0e}, {2e12:.0e}, {0.0:.0e}, {0.0:.1e}, {1e-10:.1e}")
    assert capsys.readouterr().out == "ONNX = Keras to 5e-7, 3e-10, 2e+12, 0, 0, 1.0e-10\n"
    for bad in ("", "a | b", "two\nlines", 3):
        with pytest.raises(ValueError):
            key_results(bad)


def test_static_imports_follow_the_package():
    files = {p.relative_to(REPO_ROOT).as_posix() for p in ledger.imported_modules(REPO_ROOT / "chapters" / "07_transformers_bert.ipynb")}
    assert {"bigmodel_utils/models/bert.py", "bigmodel_utils/notebook.py", "bigmodel_utils/__init__.py"} <= files


def test_the_exercise_checkers_are_bookkeeping():
    assert ledger.is_bookkeeping("bigmodel_utils/exercises/__init__.py")
    assert ledger.is_bookkeeping("bigmodel_utils/exercises/ch14.py")
    assert not ledger.is_bookkeeping("bigmodel_utils/scale.py")
    assert not ledger.module_hashes([REPO_ROOT / "bigmodel_utils" / "exercises" / "ch05.py"])


def test_prose_numbers_lists_numbers_outside_code_maths_and_references(tmp_path):
    nb = _notebook(tmp_path / "91_n.ipynb", "x = 5",
                   prose="## 2. A section\nThe CNN reaches 0.93 here, 2.5× faster (chapter 05, article 000 §3.2). "
                         "Its cost is `x = 7` or $12 L d^2$, see **05.1**.")
    found = ledger.prose_numbers(nb)
    assert [(n, s.split(",")[0]) for _, n, s in found] == [("0.93", "The CNN reaches 0.93 here"), ("2.5×", "The CNN reaches 0.93 here")]
    assert {cell for cell, _, _ in found} == {2}


def test_machines_text_names_the_chapters_that_ran_on_another_machine():
    xeon, epyc = {"cores": 2, "cpu": "Intel Xeon"}, {"cores": 2, "cpu": "AMD EPYC"}
    assert ledger.machines_text({"00": xeon, "01": xeon}) == "2 cores (Intel Xeon)"
    assert ledger.machines_text({"00": xeon, "01": xeon, "13": epyc}) == "2 cores (Intel Xeon); chapter 13 on 2 cores (AMD EPYC)"
    assert (ledger.machines_text({"00": epyc, "07": xeon, "13": xeon, "14": epyc, "15": xeon})
            == "2 cores (Intel Xeon); chapters 00, 14 on 2 cores (AMD EPYC)")
    assert ledger.machines_text({}) == ledger.machines_text({"03": {}}) == "an unrecorded machine"
    assert ledger.machines_text({"00": xeon, "03": {}}) == "2 cores (Intel Xeon)"
