"""The chapter runner: success, a failing cell, a timeout, results, summary and HTML."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bigmodel_utils.book import (
    ChapterResult,
    _jsonable,
    record,
    render_html,
    resolve_chapters,
    run_notebook,
    write_summary,
)


def _notebook(path, *sources, title="# 99 · A tiny chapter"):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell("SMOKE = None\nSEED = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(title), params] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_ok_notebook_gets_smoke_and_records_results(tmp_path):
    nb = _notebook(
        tmp_path / "99_tiny.ipynb",
        "import os\nfrom bigmodel_utils.book import record\n"
        "assert SMOKE is True and os.environ['BIGMODEL_SMOKE'] == '1'\n"
        "record('answer', 42); record('ratio', 0.5)",
    )
    r = run_notebook(nb, tmp_path / "out", smoke=True, timeout=120)
    assert r.ok, r.describe()
    assert r.results == {"answer": 42, "ratio": 0.5}
    assert (tmp_path / "out" / "99_tiny.ipynb").exists()


@pytest.mark.slow
def test_failing_cell_is_reported(tmp_path):
    nb = _notebook(tmp_path / "98_fail.ipynb", "x = 1", "raise ValueError('the loss did not fall')", "y = 2")
    r = run_notebook(nb, tmp_path / "out", smoke=True, timeout=120)
    assert not r.ok
    assert r.failing_cell == 3 and "ValueError: the loss did not fall" in r.error
    assert "FAILED in cell 3" in r.describe()


@pytest.mark.slow
def test_timeout_kills_the_kernel_and_reports(tmp_path):
    marker = tmp_path / "kernel.pid"
    nb = _notebook(tmp_path / "97_slow.ipynb", f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)")
    r = run_notebook(nb, tmp_path / "out", smoke=True, timeout=15)
    assert not r.ok and "timed out after 15 s" in r.error
    import psutil

    pid = int(marker.read_text())
    try:  # the kernel is gone (or a zombie waiting to be reaped), not left running
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


def test_run_notebook_rejects_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_notebook(tmp_path / "missing.ipynb", smoke=True)
    nb = _notebook(tmp_path / "96_x.ipynb", "pass")
    with pytest.raises(ValueError):
        run_notebook(nb, smoke=True, timeout=0)


def test_record_outside_the_runner_checks_and_prints_nothing(monkeypatch):
    import numpy as np

    monkeypatch.delenv("BIGMODEL_RESULTS", raising=False)
    assert record("x", np.float32(0.25)) is None  # a record() ending a cell shows no stray value
    with pytest.raises(ValueError):
        record("", 1)
    with pytest.raises(ValueError):
        _jsonable(float("nan"))
    with pytest.raises(TypeError):
        _jsonable([1, 2])


@pytest.mark.slow
def test_summary_merges_rows_and_renders_html(tmp_path):
    nb = _notebook(tmp_path / "95_ok.ipynb", "print('hello')")
    r = run_notebook(nb, tmp_path / "notebooks", smoke=False, timeout=120)
    assert r.ok
    page = render_html(tmp_path / "notebooks" / "95_ok.ipynb", tmp_path / "html")
    assert "hello" in page.read_text()
    other = ChapterResult("94_other", str(nb), False, 3.0, False, {"acc": 0.9}, "ValueError: x", 2)
    write_summary([other], tmp_path)
    md, js = write_summary([r], tmp_path)  # a second run adds its row, keeps the first
    data = json.loads(js.read_text())
    assert [c["name"] for c in data["chapters"]] == ["94_other", "95_ok"]
    text = md.read_text()
    assert "95_ok 99 · A tiny chapter" in text and "acc = 0.9" in text and "failed: ValueError: x" in text
    index = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert "<h2 id='glossary'>Glossary</h2>" in index and "预训练" in index and "Total" in index


def test_resolve_chapters_by_number_and_unknown():
    paths = resolve_chapters(["00"])
    assert [p.name for p in paths] == ["00_setup.ipynb"]
    with_solutions = resolve_chapters(["00"], include_solutions=True)
    assert len(with_solutions) == 2
    with pytest.raises(ValueError, match="no chapter matches"):
        resolve_chapters(["77"])


@pytest.mark.slow
def test_cli_reports_failure_and_continues(tmp_path):
    bad = _notebook(tmp_path / "93_bad.ipynb", "1 / 0")
    good = _notebook(tmp_path / "92_good.ipynb", "print('fine')")
    proc = subprocess.run(
        [sys.executable, "-m", "bigmodel_utils.book", "run", "--smoke", "--no-html", "--build-dir", str(tmp_path / "b"), str(bad), str(good)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "FAILED 93_bad" in proc.stdout and "ZeroDivisionError" in proc.stdout
    assert "92_good ... ok" in proc.stdout and "1/2 notebooks ok" in proc.stdout
    assert (tmp_path / "b" / "summary.md").exists()
