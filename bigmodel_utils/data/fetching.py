"""Getting a data set's files and checking them: :func:`fetch` one data set, :func:`verify` all of them (chapter 00).

Package files are located inside their installed distribution and checked against the manifest's sha256;
URL files are downloaded once into :func:`~bigmodel_utils.paths.data_dir` (see
:mod:`bigmodel_utils.data.download`). With no network and nothing cached, :class:`OfflineError` names the
offline alternative; ``$BIGMODEL_OFFLINE=1`` skips the network entirely.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from bigmodel_utils.data.download import DownloadError, download, file_matches, verify_file
from bigmodel_utils.data.manifest import DataError, DataManifest, DatasetEntry, FileSpec, get_manifest
from bigmodel_utils.paths import data_dir

OFFLINE_ENV = "BIGMODEL_OFFLINE"


class OfflineError(DataError):
    """An online data set that is not cached and cannot be downloaded here."""


class MissingPackageError(DataError, ImportError):
    """A data set shipped by a Python package that is not installed."""


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
    manifest: DataManifest | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    quiet: bool = False,
) -> list[Path]:
    """Make sure every file of ``name`` is present and verified; return their paths.

    Package files are located and checked; URL files are downloaded into :func:`data_dir` when not
    cached. Generated data sets have no files and return ``[]``.
    """
    entry = get_manifest(manifest)[name]
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


def verify(manifest: DataManifest | None = None) -> list[FileStatus]:
    """Check every file of the manifest that is present: shipped files and cached downloads.

    Online data sets that were never fetched are reported as ``not cached`` (not an error).
    """
    rows: list[FileStatus] = []
    for entry in get_manifest(manifest):
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
