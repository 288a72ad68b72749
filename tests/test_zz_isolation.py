"""The test run keeps to its own cache (conftest's pytest_sessionfinish also fails the run, at its very end, if the
learner's cache changed)."""

from __future__ import annotations

import os
from pathlib import Path

import conftest
import pytest
import test_notebooks
from bigmodel_utils.paths import data_dir

CHAPTER_05 = next(p for p in test_notebooks.NOTEBOOKS
                  if p.parent.name == "chapters" and p.name.startswith("05_"))


def test_this_run_uses_its_own_empty_cache():
    assert conftest.TEST_CACHE is not None and os.environ["BIGMODEL_DATA_DIR"] == str(conftest.TEST_CACHE)
    assert data_dir() == conftest.TEST_CACHE != conftest.LEARNER_CACHE


def test_the_learners_cache_is_untouched():
    assert conftest.snapshot(conftest.LEARNER_CACHE) == conftest.LEARNER_SNAPSHOT, (
        f"the test run changed {conftest.LEARNER_CACHE}: a test or notebook wrote outside BIGMODEL_DATA_DIR")


# on chapter 05's pytest-xdist worker, after it (a group runs on one worker in collection order): that
# worker's cache is where chapter 05 saved its model
@pytest.mark.xdist_group(test_notebooks.GROUPS[CHAPTER_05])
def test_notebooks_wrote_their_models_into_this_runs_cache(request):
    selected = any(item.name.startswith("test_notebook_runs_in_smoke_mode") and item.callspec.params["path"] == CHAPTER_05
                   for item in request.session.items)
    if not selected:
        pytest.skip("chapter 05 is not in this (partial) run")
    assert "05" in test_notebooks._ran, (
        "chapter 05's notebook test was selected but did not pass on this worker: it failed, or pytest-xdist "
        "ran it on another worker (its xdist_group was ignored)")
    assert (Path(conftest.TEST_CACHE) / "models" / "digits_cnn_smoke.keras").is_file()
