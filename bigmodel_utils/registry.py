"""A model registry on disk: versions, model cards and checksums (chapter 12).

``ModelRegistry(folder).publish("digits-cnn", "model.keras", card)`` stores the file as
``folder/digits-cnn/<version>/model.keras`` next to ``card.json`` (the model card plus the file's sha256).
``fetch`` copies a version's file into a folder of the caller's, hashing the bytes as it copies them, and
refuses it when the hash differs from the card's: what is loaded is exactly what was checked.

What the hash beside the file proves: the file is the one that was published, against accidents (a damaged
disk, a half-finished copy, someone editing the wrong file). What it does not prove: anyone who can write
the folder can replace the file *and* its card together. Against that, keep the expected hash somewhere the
attacker cannot write (the deployment's configuration: ``fetch(..., expected_sha256=...)``), or sign the card.

Publishing is atomic: the version is written into a hidden temporary folder and renamed into place once its
file and card are complete, so a publish that crashes half-way leaves nothing that blocks the next one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bigmodel_utils.data import sha256_file

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_VERSION = re.compile(r"[1-9][0-9]{0,8}", re.ASCII)
CARD_FIELDS = ("task", "data", "metrics", "licence", "intended_use", "limitations")
SUFFIXES = (".keras", ".tflite", ".onnx")  # what the registry stores, as model<suffix>
CHUNK = 1 << 20


class TamperedModelError(RuntimeError):
    """A registered file's sha256 differs from the one its card (or the deployment) expects."""


class CardError(ValueError):
    """A ``card.json`` that is not a valid model card: unknown or missing fields, or a file name that escapes."""


@dataclass
class ModelCard:
    """What a user must know before using a model (Mitchell et al. 2019, "Model cards for model reporting")."""

    task: str
    data: str
    metrics: dict[str, float]
    licence: str
    intended_use: str
    limitations: str
    name: str = ""
    version: str = ""
    sha256: str = ""
    file: str = ""
    published: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("task", "data", "licence", "intended_use", "limitations"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"a model card needs a non-empty {name!r}: say it, even if the answer is 'unknown'")
        if not isinstance(self.metrics, dict) or not self.metrics:
            raise ValueError("a model card needs its measured metrics, e.g. {'test_accuracy': 0.98}")
        for name in ("name", "version", "sha256", "file", "published"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"a model card's {name!r} is a string, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.extra, dict):
            raise ValueError("a model card's 'extra' is a dictionary")

    @classmethod
    def from_dict(cls, data: Any, where: str = "card") -> "ModelCard":
        """A card from its JSON form; :class:`CardError` names what is missing, unknown or wrong."""
        if not isinstance(data, dict):
            raise CardError(f"{where}: a model card is a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        unknown, missing = sorted(set(data) - known), sorted(required - set(data))
        if unknown or missing:
            raise CardError(f"{where}: " + "; ".join(
                ([f"unknown field(s) {unknown} (put extra information under 'extra')"] if unknown else [])
                + ([f"missing field(s) {missing}"] if missing else [])))
        try:
            return cls(**data)
        except ValueError as error:
            raise CardError(f"{where}: {error}") from None

    def to_markdown(self) -> str:
        metrics = ", ".join(f"{k} = {v}" for k, v in self.metrics.items())
        return (f"### {self.name} v{self.version}\n\n- **task**: {self.task}\n- **data**: {self.data}\n"
                f"- **metrics**: {metrics}\n- **licence**: {self.licence}\n- **intended use**: {self.intended_use}\n"
                f"- **limitations**: {self.limitations}\n- **sha256**: `{self.sha256}`\n")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"model names are lower-case letters, digits, '-' and '_' (up to 64), got {name!r}")
    return name


def check_version(version: Any) -> str:
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if not isinstance(text, str) or not _VERSION.fullmatch(text):
        raise ValueError(f"versions are 1, 2, 3, ... (a string or an int), got {version!r}")
    return text


_PRIVATE: list[Path] = []


def _private_folder() -> Path:
    """One temporary folder per process that only this user can write (0700), removed at exit."""
    if not _PRIVATE or not _PRIVATE[0].is_dir():
        import atexit

        _PRIVATE[:] = [Path(tempfile.mkdtemp(prefix="bigmodel-verified-"))]
        atexit.register(shutil.rmtree, _PRIVATE[0], True)
    return _PRIVATE[0]


class ModelRegistry:
    """Models on disk: ``<root>/<name>/<version>/{model<suffix>, card.json}``; versions are 1, 2, 3, ...

    Every path comes from this layout and from names checked with a full match, never from a field of a
    ``card.json``: a card that names another file is refused, not followed.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def versions(self, name: str) -> list[str]:
        """The published versions of ``name``, oldest first (a folder without a card is not a version)."""
        folder = self.root / _check_name(name)
        found = [p.name for p in folder.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)
                 and (p / "card.json").is_file()] if folder.is_dir() else []
        return sorted(found, key=int)

    def publish(self, name: str, model_file: str | Path, card: ModelCard) -> ModelCard:
        """Copy ``model_file`` into the registry as the next version of ``name``, with ``card``; return the card."""
        _check_name(name)
        source = Path(model_file)
        if not source.is_file():
            raise FileNotFoundError(f"no model file at {source}: save the model first (model.save('x.keras'))")
        if source.suffix not in SUFFIXES:
            raise ValueError(f"the registry stores {', '.join(SUFFIXES)} files, got {source.name}")
        if not isinstance(card, ModelCard):
            raise TypeError(f"publish needs a ModelCard, got {type(card).__name__}")
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".publishing-", dir=folder))  # hidden: never listed as a version
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would make the version readable by this user only
        try:
            target = staging / f"model{source.suffix}"
            shutil.copyfile(source, target)
            while True:
                # the next number after every numbered folder, complete or not: a leftover never blocks a publish
                taken = [int(p.name) for p in folder.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
                version = str(max(taken, default=0) + 1)
                stamped = ModelCard(**{**asdict(card), "name": name, "version": version, "sha256": sha256_file(target),
                                       "file": target.name,
                                       "published": datetime.now(timezone.utc).isoformat(timespec="seconds")})
                (staging / "card.json").write_text(json.dumps(asdict(stamped), indent=1, ensure_ascii=False),
                                                   encoding="utf-8")
                try:
                    os.rename(staging, folder / version)  # atomic: the version appears complete or not at all
                    return stamped
                except OSError:  # another publish took this number first: take the next one
                    if not (folder / version).exists():
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def card(self, name: str, version: str | int | None = None) -> ModelCard:
        """The card of ``name`` at ``version`` (default: the newest); :class:`CardError` if the card is not valid."""
        versions = self.versions(name)
        if not versions:
            known = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))
            raise KeyError(f"no model named {name!r} in {self.root}; registered: {known or 'none'}")
        version = check_version(version) if version is not None else versions[-1]
        if version not in versions:
            raise KeyError(f"{name!r} has no version {version!r}; versions: {versions}")
        where = f"{name} v{version} ({self.root / name / version / 'card.json'})"
        try:
            data = json.loads((self.root / name / version / "card.json").read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as error:
            raise CardError(f"{where}: not valid JSON ({str(error)[:100]}): re-publish the model") from None
        card = ModelCard.from_dict(data, where)
        if (card.name, card.version) != (name, version):
            raise CardError(f"{where}: the card says {card.name!r} v{card.version!r}, but it sits in {name}/{version}")
        if not _SHA256.fullmatch(card.sha256):
            raise CardError(f"{where}: the card's sha256 {card.sha256[:70]!r} is not 64 hex digits: re-publish the model")
        if card.file not in {f"model{s}" for s in SUFFIXES}:
            raise CardError(f"{where}: the card names the file {card.file!r}; a registered model is stored as one of "
                            f"{[f'model{s}' for s in SUFFIXES]} in its version's folder, and nothing else is loaded")
        return card

    def list(self) -> list[ModelCard]:
        """Every version of every model, oldest first within a name."""
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))
        return [self.card(n, v) for n in names for v in self.versions(n)]

    def path(self, name: str, version: str | int | None = None) -> Path:
        """Where a version's file lives in the registry (not verified: use :meth:`fetch` to load it)."""
        card = self.card(name, version)
        return self.root / name / card.version / card.file

    def fetch(self, name: str, version: str | int | None = None, *, into: str | Path | None = None,
              expected_sha256: str | None = None) -> tuple[Path, ModelCard]:
        """Copy a version's file into ``into`` and return ``(copy, card)``, checked against the card's sha256.

        The bytes are hashed as they are copied, so the copy holds exactly the bytes that were checked; load
        it, not the registry's file (which someone could change between the check and the load). ``into``
        defaults to a private temporary folder of this process (mode 0700, removed when the process ends).
        ``expected_sha256``, kept outside the registry, is checked too. :class:`TamperedModelError` if either
        differs (the copy is deleted).
        """
        card = self.card(name, version)
        source = self.root / name / card.version / card.file
        if not source.is_file():
            raise TamperedModelError(f"{name} v{card.version}: {card.file} is missing from the registry")
        folder = Path(into) if into is not None else _private_folder()
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"{name}-v{card.version}{source.suffix}"
        fd, part = tempfile.mkstemp(prefix=f".{copy.name}.", suffix=".part", dir=folder)  # new file: no symlink followed
        digest = hashlib.sha256()
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            for expected, whose in ((card.sha256, "the card's"), (expected_sha256, "the deployment's pinned")):
                if expected is not None and actual != expected.lower():
                    raise TamperedModelError(f"{name} v{card.version}: sha256 {actual[:12]}… differs from {whose} "
                                             f"{expected[:12]}…; the file was changed after publishing: refusing to "
                                             "load it")
            os.replace(part, copy)  # only checked bytes ever carry the copy's name
        finally:
            Path(part).unlink(missing_ok=True)
        return copy, card


