"""A model registry on disk: versions, model cards and checksums (chapter 12).

``Registry(folder).publish("digits-cnn", "model.keras", card)`` copies the file to
``folder/digits-cnn/<version>/model.keras`` next to ``card.json`` (the model card plus the file's sha256).
``fetch`` and ``load`` find a model by name and version (the newest by default) and refuse a file whose
sha256 no longer matches its card: a tampered or damaged model is never loaded.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bigmodel_utils.data import sha256_file

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CARD_FIELDS = ("task", "data", "metrics", "licence", "intended_use", "limitations")


class TamperedModelError(RuntimeError):
    """A registered file's sha256 differs from the one its card recorded when it was published."""


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

    def to_markdown(self) -> str:
        metrics = ", ".join(f"{k} = {v}" for k, v in self.metrics.items())
        return (f"### {self.name} v{self.version}\n\n- **task**: {self.task}\n- **data**: {self.data}\n"
                f"- **metrics**: {metrics}\n- **licence**: {self.licence}\n- **intended use**: {self.intended_use}\n"
                f"- **limitations**: {self.limitations}\n- **sha256**: `{self.sha256}`\n")


class Registry:
    """Models on disk: ``<root>/<name>/<version>/{model file, card.json}``; versions are 1, 2, 3, ..."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"model names are lower-case letters, digits, '-' and '_' (up to 64), got {name!r}")

    def versions(self, name: str) -> list[str]:
        self._check_name(name)
        folder = self.root / name
        found = [p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / "card.json").is_file()] \
            if folder.is_dir() else []
        return sorted(found, key=int)

    def publish(self, name: str, model_file: str | Path, card: ModelCard) -> ModelCard:
        """Copy ``model_file`` into the registry as the next version of ``name``, with ``card``; return the card."""
        self._check_name(name)
        source = Path(model_file)
        if not source.is_file():
            raise FileNotFoundError(f"no model file at {source}: save the model first (model.save('x.keras'))")
        existing = self.versions(name)
        version = str(int(existing[-1]) + 1) if existing else "1"
        folder = self.root / name / version
        folder.mkdir(parents=True)
        target = folder / source.name
        shutil.copyfile(source, target)
        card = ModelCard(**{**asdict(card), "name": name, "version": version, "sha256": sha256_file(target),
                            "file": source.name, "published": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        tmp = folder / "card.json.part"
        tmp.write_text(json.dumps(asdict(card), indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / "card.json")  # the version exists only once its card is complete
        return card

    def card(self, name: str, version: str | int | None = None) -> ModelCard:
        """The card of ``name`` at ``version`` (default: the newest)."""
        versions = self.versions(name)
        if not versions:
            known = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise KeyError(f"no model named {name!r} in {self.root}; registered: {known or 'none'}")
        version = str(version) if version is not None else versions[-1]
        if version not in versions:
            raise KeyError(f"{name!r} has no version {version!r}; versions: {versions}")
        data = json.loads((self.root / name / version / "card.json").read_text(encoding="utf-8"))
        return ModelCard(**data)

    def list(self) -> list[ModelCard]:
        """Every version of every model, oldest first within a name."""
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))
        return [self.card(n, v) for n in names for v in self.versions(n)]

    def fetch(self, name: str, version: str | int | None = None) -> tuple[Path, ModelCard]:
        """The verified path of a registered file and its card; :class:`TamperedModelError` if it changed."""
        card = self.card(name, version)
        path = self.root / name / card.version / card.file
        if not path.is_file():
            raise TamperedModelError(f"{name} v{card.version}: {path.name} is missing from the registry")
        actual = sha256_file(path)
        if actual != card.sha256:
            raise TamperedModelError(f"{name} v{card.version}: sha256 {actual[:12]}… differs from the card's "
                                     f"{card.sha256[:12]}…; the file was changed after publishing: refusing to load it")
        return path, card
