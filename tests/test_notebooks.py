"""Every notebook: hygiene of the source, then executed top to bottom in SMOKE mode.

The executed copies land in ``_build/smoke/`` so a failure can be opened and read.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from bigmodel_utils.book import chapter_paths, run_notebook
from bigmodel_utils.paths import BUILD_DIR, REPO_ROOT

NOTEBOOKS = chapter_paths(include_solutions=True)
IDS = [str(p.relative_to(REPO_ROOT / "chapters")) for p in NOTEBOOKS]
SMOKE_TIMEOUT = 900  # seconds per notebook

# Keras 2 / legacy APIs that Keras 3 removed or that the house style replaces.
BANNED = {
    r"keras\.preprocessing\.text|\bTokenizer\(": "use keras.layers.TextVectorization (Keras 3)",
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_smoke_mode(path):
    out = BUILD_DIR / "smoke" / ("solutions" if path.parent.name == "solutions" else "chapters")
    result = run_notebook(path, out, smoke=True, timeout=SMOKE_TIMEOUT)
    assert result.ok, f"{result.describe()}\n(executed copy: {out / path.name})\n{(result.output or '')[-3000:]}"
    executed = nbformat.read(out / path.name, as_version=4)
    for cell in executed.cells:
        for o in cell.get("outputs", []):
            text = o.get("text", "") if o.get("output_type") == "stream" else ""
            assert "absl::InitializeLog" not in text and "cuda_platform" not in text, (
                f"TensorFlow start-up noise in cell {cell.get('id')}: call setup_notebook() before importing keras/tensorflow"
            )
