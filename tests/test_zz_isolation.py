"""Runs last (files run in name order): the test run left the learner's own cache exactly as it found it."""

from __future__ import annotations

import os
from pathlib import Path

import conftest
import pytest
from bigmodel_utils.paths import data_dir


def test_this_run_uses_its_own_empty_cache():
    assert conftest.TEST_CACHE is not None and os.environ["BIGMODEL_DATA_DIR"] == str(conftest.TEST_CACHE)
    assert data_dir() == conftest.TEST_CACHE != conftest.LEARNER_CACHE


def test_the_learners_cache_is_untouched():
    assert conftest.snapshot(conftest.LEARNER_CACHE) == conftest.LEARNER_SNAPSHOT, (
        f"the test run changed {conftest.LEARNER_CACHE}: a test or notebook wrote outside BIGMODEL_DATA_DIR")


def test_notebooks_wrote_their_models_into_this_runs_cache():
    import test_notebooks

    if "05" not in test_notebooks._ran:
        pytest.skip("chapter 05 did not run in this (partial) run")
    assert (Path(conftest.TEST_CACHE) / "models" / "digits_cnn_smoke.keras").is_file()
