"""Where things live: the repository, the chapters, the data manifest and the data cache."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder that holds ``pyproject.toml``).
REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTERS_DIR = REPO_ROOT / "chapters"
SOLUTIONS_DIR = CHAPTERS_DIR / "solutions"
MANIFEST_PATH = REPO_ROOT / "data" / "registry.json"
LOCK_PATH = REPO_ROOT / "requirements.lock"
NODEPS_LOCK_PATH = REPO_ROOT / "requirements-nodeps.lock"
BUILD_DIR = REPO_ROOT / "_build"


def data_dir() -> Path:
    """The cache folder for downloaded data and trained weights (chapter 00).

    ``$BIGMODEL_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/bigmodel``, else ``~/.cache/bigmodel``.
    The folder is created on first use. It lives outside the repository, so nothing downloaded
    ever ends up in git.
    """
    override = os.environ.get("BIGMODEL_DATA_DIR")
    if override:
        path = Path(override).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base).expanduser() / "bigmodel"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_path(filename: str) -> Path:
    """Where a chapter saves a trained model that later chapters may reuse: ``data_dir()/models/<filename>``.

    Chapter 05 saves its digits CNN here; chapters 08-11 load it if present and retrain it otherwise.
    """
    if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
        raise ValueError(f"a model file name is a plain name such as 'digits_cnn.keras', got {filename!r}")
    folder = data_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / filename


class MissingModelWarning(UserWarning):
    """A chapter did not find a model that an earlier chapter saves, and works around it (the test run fails on it)."""


def saved_model(path: str | Path, chapter: str, instead: str) -> bool:
    """True when ``path``, the model that chapter ``chapter`` saves, exists; otherwise warn and return False.

    A chapter run on its own still works (it trains a stand-in, or skips a comparison: ``instead`` says which),
    and the learner is told to run chapter ``chapter`` first. The warning is a :class:`MissingModelWarning`,
    so that ``make test``, which runs the producing chapters first, can check that no chapter took this path.
    """
    import warnings

    path = Path(path)
    if path.is_file():
        return True
    warnings.warn(f"{path.name} not found in {path.parent}: run chapter {chapter} first to save it; meanwhile "
                  f"this chapter is {instead}", MissingModelWarning, stacklevel=2)
    return False
