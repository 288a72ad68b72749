"""The book's data: a manifest of named data sets, checksummed files and one loader per data set.

Introduced in chapter 00. The everyday call is :func:`load_dataset`::

    from bigmodel_utils.data import load_dataset
    x_train, y_train = load_dataset("digits", split="train")
    table = load_dataset("penguins_raw")

Every file is checked against the sha256 in ``data/registry.json`` before it is used. Online data
sets (``mnist``, ``fashion_mnist``, ``imdb``) are downloaded once into :func:`data_dir` (override
with ``$BIGMODEL_DATA_DIR``); with no network and nothing cached, the error names the offline
alternative. ``$BIGMODEL_OFFLINE=1`` skips the network entirely.

The modules, in the order a file travels through them:

- :mod:`~bigmodel_utils.data.manifest` -- :class:`DataManifest`, the parsed ``data/registry.json``;
  :func:`list_datasets`, :func:`dataset_info`
- :mod:`~bigmodel_utils.data.download` -- checksummed downloads (:func:`download`, :func:`sha256_file`)
- :mod:`~bigmodel_utils.data.fetching` -- :func:`fetch` one data set's verified files, :func:`verify` them all
- :mod:`~bigmodel_utils.data.loaders` -- one loader per data set, and :func:`load_dataset`

Command line: ``python -m bigmodel_utils.data list | fetch NAME | verify``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bigmodel_utils.data.download import (
    CacheWriteError,
    ChecksumError,
    DownloadError,
    download,
    file_matches,
    sha256_file,
    verify_file,
)
from bigmodel_utils.data.fetching import FileStatus, MissingPackageError, OfflineError, fetch, verify
from bigmodel_utils.data.manifest import (
    DataError,
    DataManifest,
    DatasetEntry,
    FileSpec,
    ManifestError,
    UnknownDatasetError,
    dataset_info,
    get_manifest,
    list_datasets,
)
from bigmodel_utils.paths import data_dir

if TYPE_CHECKING:
    from bigmodel_utils.data.loaders import load_dataset

__all__ = [
    "CacheWriteError",
    "ChecksumError",
    "DataError",
    "DataManifest",
    "DownloadError",
    "ManifestError",
    "MissingPackageError",
    "OfflineError",
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


def __getattr__(name: str):
    # load_dataset is imported on first use: its module imports NumPy, and `import bigmodel_utils.data` stays cheap
    if name == "load_dataset":
        from bigmodel_utils.data.loaders import load_dataset

        return load_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
