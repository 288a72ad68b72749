"""Every notebook: hygiene of the source, then executed top to bottom in SMOKE mode.

The executed copies land in ``_build/smoke/`` so a failure can be opened and read. The run's cache is empty at
the start (``tests/conftest.py``), so a chapter that loads a model an earlier chapter saves (it says so with
``saved_model(path, "05", ...)``) has that chapter run first, in this run, if it has not run yet; and no
executed notebook may show a ``MissingModelWarning``: nothing is silently skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bigmodel_utils.book import chapter_paths, run_notebook
from bigmodel_utils.paths import BUILD_DIR, REPO_ROOT

NOTEBOOKS = chapter_paths(include_solutions=True)
IDS = [str(p.relative_to(REPO_ROOT / "chapters")) for p in NOTEBOOKS]
SMOKE_TIMEOUT = 900  # seconds per notebook

# Keras 2 / legacy APIs that Keras 3 removed or that the house style replaces.
BANNED = {
    # Keras 2's text Tokenizer (a bare ``Tokenizer(``); the ``tokenizers`` library's, written qualified, is allowed
    r"keras\.preprocessing\.text|(?<![\w.])Tokenizer\(": "use keras.layers.TextVectorization (Keras 3)",
    r"ImageDataGenerator": "use Keras preprocessing layers (RandomRotation, RandomZoom, ...)",
    r"""\.save\([^)]*\.h5['"]|save_format\s*=\s*['"]h5""": "save to .keras (model.save('x.keras')) or model.export()",
    r"fit_generator|predict_generator|evaluate_generator": "model.fit/predict/evaluate take generators and tf.data",
    r"tf\.lite\.Interpreter": "use ai_edge_litert.interpreter.Interpreter (tf.lite's is deprecated)",
    r"\bimport tf_keras\b|from tf_keras": "this book uses Keras 3 only",
}


def test_there_are_chapters_and_solutions():
    names = [p.name for p in NOTEBOOKS]
    assert "00_setup.ipynb" in names
    assert any(p.parent.name == "solutions" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_hygiene(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:
        assert not c.get("outputs"), f"stored outputs in cell {c.get('id')}: clear them before committing"
        assert c.get("execution_count") is None, f"stored execution count in cell {c.get('id')}"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    assert tagged[0].cell_type == "code" and re.search(r"^SMOKE\s*=", tagged[0].source, re.M)
    assert code.index(tagged[0]) <= 1, "the parameters cell belongs near the top"
    for c in code:
        for pattern, advice in BANNED.items():
            m = re.search(pattern, c.source)
            assert not m, f"cell {c.get('id')} uses {m.group(0)!r}: {advice}"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "open with a '# NN · Title' heading"
    if path.parent.name != "solutions":
        intro = first.source.lower()
        assert "what you will learn" in intro and "time on a laptop cpu" in intro, "say what and how long first"
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
        assert "## summary" in text and "## exercises" in text


def producers(path) -> list[str]:
    """The chapters whose saved models ``path`` loads: the ``"NN"`` of each ``saved_model(..., "NN", ...)`` call."""
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    return sorted(set(re.findall(r"saved_model\(\s*[^,()]+,\s*[\"'](\d\d)[\"']", source)))


def test_producers_are_found():
    assert producers(REPO_ROOT / "chapters" / "11_deploying_web_service.ipynb") == ["05", "06"]
    assert producers(REPO_ROOT / "chapters" / "08_evaluating_explaining.ipynb") == ["05", "06", "07"]
    assert producers(REPO_ROOT / "chapters" / "00_setup.ipynb") == []
    assert producers(REPO_ROOT / "chapters" / "14_adapting_serving.ipynb") == ["13"]


_ran: set[str] = set()  # chapters executed in this run (so in this run's cache)


def _smoke_run(path):
    out = BUILD_DIR / "smoke" / ("solutions" if path.parent.name == "solutions" else "chapters")
    for chapter in producers(path):
        if chapter not in _ran:
            (producer,) = [p for p in NOTEBOOKS if p.parent.name == "chapters" and p.name.startswith(chapter + "_")]
            _smoke_run(producer)
    result = run_notebook(path, out, smoke=True, timeout=SMOKE_TIMEOUT)
    name = str(path.relative_to(REPO_ROOT / "chapters"))
    timing = BUILD_DIR / "smoke" / "timings" / (name.replace("/", "__") + ".json")  # for python -m bigmodel_utils.timings
    timing.parent.mkdir(parents=True, exist_ok=True)
    timing.write_text(json.dumps({"notebook": name, "seconds": round(result.seconds, 1), "ok": result.ok,
                                  "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                                  "run": os.environ.get("BIGMODEL_TEST_RUN", "")}), encoding="utf-8")
    assert result.ok, f"{result.describe()}\n(executed copy: {out / path.name})\n{(result.output or '')[-3000:]}"
    if path.parent.name == "chapters":
        _ran.add(path.name[:2])
    return nbformat.read(out / path.name, as_version=4)


SITE_GROUP = "site"  # tests/test_site.py builds the site from chapters 00-02: they run first, on the same worker
SITE_CHAPTERS = ("00", "01", "02")


def xdist_groups() -> dict[Path, str]:
    """Which notebooks must run on the same pytest-xdist worker (``make test`` runs ``-n TEST_JOBS --dist loadgroup``).

    Each worker has its own cache, so a chapter that loads a saved model runs where the chapter that saves it ran:
    the connected parts of the producer graph form one group each (chapters 05-08, 10, 11 and the solutions that
    load their models; 13, 14, ...). Chapters 00-02 join the site's group. Every other notebook goes wherever a
    worker is free.
    """
    parent = {}

    def find(a):
        parent.setdefault(a, a)
        while parent[a] != a:
            a = parent[a]
        return a

    for path in NOTEBOOKS:
        for chapter in producers(path):
            parent[find(str(path))] = find(chapter)
    chapter_of = {p.name[:2]: str(p) for p in NOTEBOOKS if p.parent.name == "chapters"}
    for number, path in chapter_of.items():  # a producing chapter is the node named by its number
        if number in parent:
            parent[find(path)] = find(number)
    groups = {}
    for path in NOTEBOOKS:
        root = find(str(path))
        members = [p for p in NOTEBOOKS if find(str(p)) == root]
        if len(members) > 1:
            groups[path] = "models-" + min(p.name[:2] for p in members)
        elif path.parent.name == "chapters" and path.name[:2] in SITE_CHAPTERS:
            groups[path] = SITE_GROUP
    return groups


GROUPS = xdist_groups()


def test_xdist_groups_keep_producers_with_the_chapters_that_load_their_models():
    for path in NOTEBOOKS:
        for chapter in producers(path):
            (producer,) = [p for p in NOTEBOOKS if p.parent.name == "chapters" and p.name.startswith(chapter + "_")]
            assert GROUPS.get(path) and GROUPS.get(path) == GROUPS.get(producer), (path.name, producer.name)
    by_name = {str(p.relative_to(REPO_ROOT / "chapters")): g for p, g in GROUPS.items()}
    assert by_name["08_evaluating_explaining.ipynb"] == by_name["07_transformers_bert.ipynb"] == by_name["05_convolutional_networks.ipynb"]
    assert by_name["00_setup.ipynb"] == SITE_GROUP and "03_preparing_data.ipynb" not in by_name


GROUPING_PROBE = """
import os, pytest
@pytest.mark.parametrize("i", [pytest.param(i, marks=[pytest.mark.xdist_group("chain")] if i < 4 else []) for i in range(8)])
def test_probe(i):
    with open(os.path.join(os.environ["PROBE_OUT"], f"ran-{i}"), "w") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"])
"""


@pytest.mark.slow
def test_pytest_xdist_keeps_a_group_on_one_worker(tmp_path):
    """``make test``'s grouping, end to end: with ``-n 2 --dist loadgroup`` the four tests of one group run on one
    worker. (pytest 9.2 with pytest-xdist 3.8 silently distributed them like ungrouped tests, pytest-xdist issue
    #1386, so two workers ran chapter 07 at once into the same files; the lock keeps pytest below 9.2.)"""
    (tmp_path / "test_probe.py").write_text(GROUPING_PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()  # options meant for the outer run (--lf, plugins off) stay out
           if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    env["PROBE_OUT"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = {i: (tmp_path / f"ran-{i}").read_text() for i in range(8)}
    assert len({workers[i] for i in range(4)}) == 1, f"one group spread over workers: {workers}"
    assert len(set(workers.values())) == 2, f"both workers should get work: {workers}"


def test_parallel_workers_share_the_cores():
    from conftest import THREAD_VARIABLES, available_cores, share_the_cores, threads_per_worker

    assert threads_per_worker(2, 2) == 1 and threads_per_worker(8, 3) == 2 and threads_per_worker(1, 4) == 1
    env = {"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "7"}
    share_the_cores(env)
    assert env["OMP_NUM_THREADS"] == "7", "a variable the maintainer set wins"
    assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == str(threads_per_worker(available_cores(), 2))
    serial = {"PYTEST_XDIST_WORKER_COUNT": "1"}
    share_the_cores(serial)
    assert serial == {"PYTEST_XDIST_WORKER_COUNT": "1"}, "a serial run keeps TensorFlow's own pools"
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) > 1:  # this run: what the notebooks' kernels inherit
        assert all(name in os.environ for name in THREAD_VARIABLES)


@pytest.mark.slow
@pytest.mark.parametrize("path", [pytest.param(p, marks=[pytest.mark.xdist_group(GROUPS[p])] if p in GROUPS else [])
                                  for p in NOTEBOOKS], ids=IDS)
def test_notebook_runs_in_smoke_mode(path):
    executed = _smoke_run(path)
    for cell in executed.cells:
        for o in cell.get("outputs", []):
            text = o.get("text", "") if o.get("output_type") == "stream" else ""
            assert "absl::InitializeLog" not in text and "cuda_platform" not in text, (
                f"TensorFlow start-up noise in cell {cell.get('id')}: call setup_notebook() before importing keras/tensorflow"
            )
            assert "MissingModelWarning" not in text, f"cell {cell.get('id')} skipped work for a missing model: {text[:300]}"


def test_the_keras_2_tokenizer_ban_catches_it_and_spares_the_tokenizers_library():
    pattern = next(p for p, advice in BANNED.items() if "TextVectorization" in advice)
    for keras_2 in ("from keras.preprocessing.text import Tokenizer", "tok = Tokenizer(num_words=3000)"):
        assert re.search(pattern, keras_2), keras_2
    for allowed in ("tok = tokenizers.Tokenizer(tokenizers.models.BPE())", "CharTokenizer.fit(texts)", "CharTokenizer(v)"):
        assert not re.search(pattern, allowed), allowed


def test_gate_counts_agree_across_the_book():
    """One count everywhere: an LSTM has three gates and a candidate (four blocks of weights), a GRU two gates and a
    candidate (three blocks). Chapters 01 and 06 and exercise 06.2 once disagreed."""
    want = {"LSTM": "three", "GRU": "two"}
    sources = {p: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells) for p in NOTEBOOKS}
    sources.update({p: p.read_text(encoding="utf-8") for p in (REPO_ROOT / "bigmodel_utils").rglob("*.py")})
    sources[REPO_ROOT / "data" / "glossary.csv"] = (REPO_ROOT / "data" / "glossary.csv").read_text(encoding="utf-8")
    checked = 0
    for path, text in sources.items():
        for m in re.finditer(r"\b(two|three|four|five) gates\b", text):
            before = text[max(0, m.start() - 200):m.start()]
            named = [(before.rfind(k), k) for k in want if k in before]
            assert named, f"{path.name}: {text[m.start() - 60:m.end()]!r} does not say which cell it counts"
            kind = max(named)[1]  # the cell named last before the count
            assert m.group(1) == want[kind], (
                f"{path.name}: {text[m.start() - 80:m.end() + 20]!r}: the book counts {want[kind]} gates (and a candidate) for the {kind}")
            checked += 1
    assert checked >= 4, "the chapters state the gate counts (01, 06, exercise 06.2)"
