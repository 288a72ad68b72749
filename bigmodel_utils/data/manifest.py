"""The data manifest: one file (``data/registry.json``) naming every data set the book uses.

:class:`DataManifest` is the parsed file; :func:`list_datasets` and :func:`dataset_info` read the book's own.
Each entry has a name, a one-line description, a licence and a source:

- ``package``: files shipped inside an installed Python distribution (works offline), each with the
  sha256 of the file that was tested, so a changed or damaged install is caught;
- ``url``: files to download once, each with URL, sha256 and size (online only);
- ``generated``: built on this machine (for example from Python's own standard library).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_utils.paths import MANIFEST_PATH


class DataError(Exception):
    """Base class of every data error; its message says what to do."""


class UnknownDatasetError(DataError, KeyError):
    """A data-set name that the manifest does not know."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ManifestError(DataError, ValueError):
    """The manifest file is missing or malformed."""


_SOURCE_KINDS = {"package", "url", "generated"}


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set: where it comes from and what its bytes must hash to."""

    sha256: str
    size: int | None = None
    url: str | None = None  # url sources
    filename: str | None = None  # url sources: path inside the cache folder
    module: str | None = None  # package sources: the importable module that ships it
    path: str | None = None  # package sources: path inside that module's folder

    @property
    def label(self) -> str:
        return self.filename or f"{self.module}/{self.path}"


@dataclass(frozen=True)
class DatasetEntry:
    """One data set of the manifest (see ``python -m bigmodel_utils.data list``)."""

    name: str
    description: str
    licence: str
    source_kind: str
    offline: bool
    files: tuple[FileSpec, ...] = ()
    homepage: str = ""
    distribution: str | None = None
    install_hint: str | None = None
    offline_alternative: str | None = None


def _require(obj: dict, key: str, where: str) -> Any:
    if key not in obj:
        raise ManifestError(f"{where}: missing required field {key!r}")
    return obj[key]


def _check_cache_name(filename: Any, where: str) -> None:
    """A url file's ``filename`` is a relative path inside the cache folder: no absolute path, no '..', no '\\'."""
    parts = filename.split("/") if isinstance(filename, str) else []
    if (not parts or filename.startswith("/") or "\\" in filename or ":" in filename or "\0" in filename
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise ManifestError(f"{where}: filename {filename!r} must be a relative path inside the cache folder "
                            "(such as 'mnist.npz' or 'fashion_mnist/train.gz': no absolute path, no '..', no empty or hidden parts)")


def _parse_entry(raw: dict) -> DatasetEntry:
    name = _require(raw, "name", "manifest entry")
    where = f"manifest entry {name!r}"
    source = _require(raw, "source", where)
    kind = _require(source, "kind", where + " source")
    if kind not in _SOURCE_KINDS:
        raise ManifestError(f"{where}: source kind {kind!r} is not one of {sorted(_SOURCE_KINDS)}")
    files = []
    for f in source.get("files", []):
        sha = _require(f, "sha256", where + " file")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(f"{where}: sha256 {sha!r} is not 64 lower-case hex digits")
        if kind == "url" and not (f.get("url") and f.get("filename")):
            raise ManifestError(f"{where}: a url file needs 'url' and 'filename'")
        if kind == "url":
            _check_cache_name(f["filename"], where)
            size = f.get("size")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ManifestError(f"{where}: a url file needs its 'size' in bytes (the download stops there), "
                                    f"got {size!r}")
        if kind == "package" and not (f.get("module") and f.get("path")):
            raise ManifestError(f"{where}: a package file needs 'module' and 'path'")
        files.append(
            FileSpec(
                sha256=sha,
                size=f.get("size"),
                url=f.get("url"),
                filename=f.get("filename"),
                module=f.get("module"),
                path=f.get("path"),
            )
        )
    if kind in {"package", "url"} and not files:
        raise ManifestError(f"{where}: a {kind} source needs at least one file")
    return DatasetEntry(
        name=name,
        description=_require(raw, "description", where),
        licence=_require(raw, "licence", where),
        source_kind=kind,
        offline=bool(_require(raw, "offline", where)),
        files=tuple(files),
        homepage=raw.get("homepage", ""),
        distribution=source.get("distribution"),
        install_hint=source.get("install_hint"),
        offline_alternative=raw.get("offline_alternative"),
    )


class DataManifest:
    """The parsed manifest ``data/registry.json``: every data set by name. ``DataManifest()`` reads the book's own;
    ``DataManifest(path)`` another manifest file (the tests' small ones)."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path is not None else MANIFEST_PATH
        if not path.is_file():
            raise ManifestError(
                f"data manifest not found at {path}; the book's manifest is data/registry.json "
                "in the repository (install the package with 'pip install -e .' from the repository)"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"data manifest {path} is not valid JSON: {exc}") from exc
        entries = [_parse_entry(e) for e in raw.get("datasets", [])]
        names = [e.name for e in entries]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ManifestError(f"data manifest {path} names {sorted(dupes)} more than once")
        self.path = path
        self._entries = {e.name: e for e in entries}

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __getitem__(self, name: str) -> DatasetEntry:
        if not isinstance(name, str):
            raise TypeError(f"a data-set name is a string, got {type(name).__name__}")
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownDatasetError(
                f"unknown data set {name!r}.{hint} Known data sets: {', '.join(self._entries)} "
                "(see 'python -m bigmodel_utils.data list')"
            ) from None


_book_manifest: DataManifest | None = None


def get_manifest(manifest: DataManifest | None = None) -> DataManifest:
    """The manifest to use: the one given, else the book's own (read once)."""
    global _book_manifest
    if manifest is not None:
        return manifest
    if _book_manifest is None:
        _book_manifest = DataManifest()
    return _book_manifest


def list_datasets(manifest: DataManifest | None = None) -> list[str]:
    """The names of every data set in the manifest, offline ones first as listed there."""
    return get_manifest(manifest).names()


def dataset_info(name: str, manifest: DataManifest | None = None) -> DatasetEntry:
    """The manifest entry of ``name`` (description, licence, source, files)."""
    return get_manifest(manifest)[name]
