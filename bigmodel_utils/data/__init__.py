"""The book's data: a registry of named data sets, checksummed files and one loader per data set.

Introduced in chapter 00. The everyday call is :func:`load_dataset`::

    from bigmodel_utils.data import load_dataset
    x_train, y_train = load_dataset("digits", split="train")
    table = load_dataset("penguins_raw")

Every file is checked against the sha256 in ``data/registry.json`` before it is used. Online data
sets (``mnist``, ``fashion_mnist``, ``imdb``) are downloaded once into :func:`data_dir` (override
with ``$BIGMODEL_DATA_DIR``); with no network and nothing cached, the error names the offline
alternative. ``$BIGMODEL_OFFLINE=1`` skips the network entirely.

Command line: ``python -m bigmodel_utils.data list | fetch NAME | verify``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_utils.data.download import (
    CacheWriteError,
    ChecksumError,
    DownloadError,
    download,
    file_matches,
    sha256_file,
    verify_file,
)
from bigmodel_utils.data.registry import (
    DataError,
    DatasetEntry,
    FileSpec,
    ManifestError,
    Registry,
    UnknownDatasetError,
)
from bigmodel_utils.paths import data_dir

__all__ = [
    "CacheWriteError",
    "ChecksumError",
    "DataError",
    "DownloadError",
    "ManifestError",
    "MissingPackageError",
    "OfflineError",
    "Registry",
    "UnknownDatasetError",
    "data_dir",
    "dataset_info",
    "download",
    "fetch",
    "list_datasets",
    "load_dataset",
    "sha256_file",
    "verify",
]

OFFLINE_ENV = "BIGMODEL_OFFLINE"


class OfflineError(DataError):
    """An online data set that is not cached and cannot be downloaded here."""


class MissingPackageError(DataError, ImportError):
    """A data set shipped by a Python package that is not installed."""


_default_registry: Registry | None = None


def get_registry(registry: Registry | None = None) -> Registry:
    """The registry to use: the one given, else the book's own (read once)."""
    global _default_registry
    if registry is not None:
        return registry
    if _default_registry is None:
        _default_registry = Registry()
    return _default_registry


def list_datasets(registry: Registry | None = None) -> list[str]:
    """The names of every registered data set, offline ones first as in the manifest."""
    return get_registry(registry).names()


def dataset_info(name: str, registry: Registry | None = None) -> DatasetEntry:
    """The registry entry of ``name`` (description, licence, source, files)."""
    return get_registry(registry)[name]


def _package_file(entry: DatasetEntry, spec: FileSpec) -> Path:
    found = importlib.util.find_spec(spec.module) if spec.module else None
    if found is None or not found.submodule_search_locations:
        hint = entry.install_hint or f"pip install {entry.distribution or spec.module}"
        raise MissingPackageError(
            f"data set {entry.name!r} is shipped by the Python package {entry.distribution!r}, "
            f"which is not installed; run 'make test' (or '{hint}') to install it"
        )
    return Path(list(found.submodule_search_locations)[0]) / spec.path


def _offline_requested() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _offline_message(entry: DatasetEntry, reason: str) -> str:
    alt = f", or use the offline data set {entry.offline_alternative!r} instead" if entry.offline_alternative else ""
    return (
        f"data set {entry.name!r} is not cached in {data_dir()} and cannot be downloaded ({reason}); "
        f"run 'python -m bigmodel_utils.data fetch {entry.name}' on a machine with internet and copy "
        f"the cache folder here (or point BIGMODEL_DATA_DIR at it){alt}"
    )


def fetch(
    name: str,
    registry: Registry | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    quiet: bool = False,
) -> list[Path]:
    """Make sure every file of ``name`` is present and verified; return their paths.

    Package files are located and checked; URL files are downloaded into :func:`data_dir` when not
    cached. Generated data sets have no files and return ``[]``.
    """
    entry = get_registry(registry)[name]
    if entry.source_kind == "generated":
        return []
    paths: list[Path] = []
    for spec in entry.files:
        if entry.source_kind == "package":
            paths.append(verify_file(_package_file(entry, spec), spec.sha256, f"{entry.name} ({spec.label})"))
            continue
        cache = data_dir().resolve()
        dest = cache / spec.filename
        if cache not in dest.resolve().parents:  # the manifest check refuses this; a symlink in the cache could not
            raise DataError(f"{entry.name}: {spec.filename!r} resolves outside the cache folder {cache}; refusing it")
        if file_matches(dest, spec.sha256):
            paths.append(dest)
            continue
        if _offline_requested():
            raise OfflineError(_offline_message(entry, f"{OFFLINE_ENV} is set"))
        if not quiet:
            size = f" ({spec.size / 1e6:.1f} MB)" if spec.size else ""
            print(f"downloading {entry.name}: {spec.url}{size}")
        try:
            paths.append(download(spec.url, dest, spec.sha256, spec.size, timeout=timeout, retries=retries, quiet=quiet))
        except DownloadError as exc:
            raise OfflineError(_offline_message(entry, str(exc.__cause__ or exc))) from exc
    return paths


@dataclass(frozen=True)
class FileStatus:
    """One row of :func:`verify`: a data set's file and whether it is usable."""

    dataset: str
    file: str
    status: str  # "ok", "not cached", "missing package", "corrupt"
    path: str = ""


def verify(registry: Registry | None = None) -> list[FileStatus]:
    """Check every registered file that is present: shipped files and cached downloads.

    Online data sets that were never fetched are reported as ``not cached`` (not an error).
    """
    rows: list[FileStatus] = []
    for entry in get_registry(registry):
        for spec in entry.files:
            if entry.source_kind == "package":
                try:
                    path = _package_file(entry, spec)
                except MissingPackageError:
                    rows.append(FileStatus(entry.name, spec.label, "missing package"))
                    continue
            else:
                path = data_dir() / spec.filename
            if not path.exists():
                status = "missing package" if entry.source_kind == "package" else "not cached"
            else:
                status = "ok" if file_matches(path, spec.sha256) else "corrupt"
            rows.append(FileStatus(entry.name, spec.label, status, str(path)))
    return rows


def load_dataset(name: str, **kwargs: Any) -> Any:
    """Load a registered data set by name; keyword arguments go to its loader.

    ==================  ===================================================================
    name                returns
    ==================  ===================================================================
    digits              ``(images, labels)``: float32 (n, 8, 8) in [0, 1], int64; ``split``
    mnist               ``(images, labels)``: float32 (n, 28, 28) in [0, 1], int64; ``split``
    fashion_mnist       as mnist
    imdb                ``(sequences, labels)``: list of int arrays (word indices), int64
    penguins_raw        ``pandas.DataFrame``: the raw, untidy table
    sample_photo        float32 (427, 640) grey photo in [0, 1]; ``grey=False`` for colour
    reviews_zh          ``pandas.DataFrame`` with ``text`` and ``label``; ``split``, ``clean``
    peoples_daily_zh    ``list[str]``: sentences, segmentation tags stripped
    stdlib_docstrings   ``pandas.DataFrame``: module, package, name, kind, text
    minilm_l6_v2        ``pathlib.Path``: the verified model folder
    ==================  ===================================================================
    """
    from bigmodel_utils.data import loaders

    entry = get_registry()[name]
    loader = loaders.LOADERS.get(entry.name)
    if loader is None:  # pragma: no cover - a manifest entry without a loader is a bug
        raise DataError(f"data set {name!r} has no loader in bigmodel_utils.data.loaders")
    return loader(**kwargs)
