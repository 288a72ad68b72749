"""The data manifest (data/registry.json) and the offline loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bigmodel_utils.data import (
    ChecksumError,
    DataManifest,
    ManifestError,
    MissingPackageError,
    UnknownDatasetError,
    dataset_info,
    fetch,
    list_datasets,
    load_dataset,
)
from bigmodel_utils.data.loaders import clean_reviews

REQUIRED = {"digits", "penguins_raw", "reviews_zh", "stdlib_docstrings", "mnist", "fashion_mnist", "imdb"}


def test_manifest_has_every_required_dataset_with_licence_and_checksums():
    names = set(list_datasets())
    assert REQUIRED <= names
    for name in names:
        e = dataset_info(name)
        assert e.description and e.licence
        if e.source_kind == "url":
            assert not e.offline and e.offline_alternative in names
            for f in e.files:
                assert f.url.startswith("https://") and len(f.sha256) == 64 and f.size > 0
        if e.source_kind == "package":
            assert e.offline and all(len(f.sha256) == 64 for f in e.files)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownDatasetError, match="Did you mean 'digits'"):
        dataset_info("digit")
    with pytest.raises(KeyError):  # also a KeyError, as callers expect
        load_dataset("no_such_data")


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match="string"):
        dataset_info(3)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"datasets": [{"name": "x"}]}), "missing required field 'source'"),
        (json.dumps({"datasets": [{"name": "x", "description": "d", "licence": "l", "offline": True,
                                   "source": {"kind": "ftp"}}]}), "source kind 'ftp'"),
        (json.dumps({"datasets": [{"name": "x", "description": "d", "licence": "l", "offline": False,
                                   "source": {"kind": "url", "files": [{"url": "u", "filename": "f", "sha256": "abc"}]}}]}),
         "64 lower-case hex"),
    ],
)
def test_malformed_manifest_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        DataManifest(path)


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        DataManifest(tmp_path / "nope.json")


def _package_manifest(tmp_path, module: str, path: str, sha: str) -> DataManifest:
    m = {"datasets": [{"name": "p", "description": "d", "licence": "l", "offline": True,
                       "source": {"kind": "package", "distribution": "some-dist",
                                  "files": [{"module": module, "path": path, "sha256": sha}]}}]}
    (tmp_path / "m.json").write_text(json.dumps(m))
    return DataManifest(tmp_path / "m.json")


def test_package_file_with_wrong_checksum_is_refused(tmp_path):
    manifest = _package_manifest(tmp_path, "palmerpenguins", "data/penguins-raw.csv", "0" * 64)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch("p", manifest)


def test_missing_package_says_how_to_install(tmp_path):
    manifest = _package_manifest(tmp_path, "no_such_module_xyz", "f.txt", "0" * 64)
    with pytest.raises(MissingPackageError, match="pip install some-dist"):
        fetch("p", manifest)


def test_digits_loader_and_split():
    x, y = load_dataset("digits")
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32 and 0 <= x.min() and x.max() == 1.0
    xtr, ytr = load_dataset("digits", split="train")
    xte, yte = load_dataset("digits", split="test")
    assert len(xtr) + len(xte) == 1797 and len(xte) == 360
    # stratified: every class keeps its share within one image
    assert np.abs(np.bincount(yte) / len(yte) - np.bincount(y) / len(y)).max() < 0.01
    # fixed: the same call gives the same split, and train and test share no image
    assert np.array_equal(load_dataset("digits", split="test")[0], xte)
    train_rows = {r.tobytes() for r in xtr.reshape(len(xtr), -1)}
    assert sum(r.tobytes() in train_rows for r in xte.reshape(len(xte), -1)) == 0


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"test_size": 1.5}])
def test_digits_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        load_dataset("digits", **kwargs)


def test_penguins_raw_is_the_untouched_table():
    df = load_dataset("penguins_raw")
    assert df.shape == (344, 17)
    assert df.isna().sum().sum() > 0  # real missing values, for chapter 03 to clean


def test_reviews_are_deduplicated_before_the_split():
    df = load_dataset("reviews_zh")
    report = df.attrs["cleaning"]
    assert report["lines"] == 35124 and report["contradictory_texts"] == 47
    assert report["kept"] == len(df) == 17363
    assert df["text"].is_unique and set(df["label"]) == {0, 1}
    parts = {s: load_dataset("reviews_zh", split=s) for s in ("train", "validation", "test")}
    assert sum(len(p) for p in parts.values()) == len(df)
    texts = {s: set(p["text"]) for s, p in parts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    assert abs(parts["test"]["label"].mean() - df["label"].mean()) < 0.01


def test_raw_reviews_cannot_be_split():
    raw = load_dataset("reviews_zh", clean=False)
    assert len(raw) == 35123 and not raw["text"].is_unique
    with pytest.raises(ValueError, match="leaks"):
        load_dataset("reviews_zh", split="train", clean=False)


def test_clean_reviews_counts_each_step():
    df, report = clean_reviews(["好", "好", "差", "中", "中", " "], [1, 1, 0, 1, 0, 1])
    assert report == {"lines": 6, "empty": 1, "duplicates": 1, "contradictory_texts": 1, "kept": 2}
    assert sorted(df["text"]) == ["好", "差"]
    with pytest.raises(ValueError, match="differ in length"):
        clean_reviews(["a"], [1, 0])


def test_peoples_daily_tags_are_stripped():
    sentences = load_dataset("peoples_daily_zh")
    assert len(sentences) > 19000
    assert sentences[0].startswith("迈向充满希望的新世纪")
    assert not any("/b" in s or "/e" in s for s in sentences[:500])


def test_stdlib_docstrings_are_english_text_from_many_packages(data_cache):
    df = load_dataset("stdlib_docstrings", min_chars=40)
    assert len(df) > 2000 and df["package"].nunique() > 50
    assert set(df["kind"]) == {"module", "class", "function"}
    assert (df["text"].str.len() >= 40).all()
    cached = list(data_cache.glob("stdlib_docstrings-*.json"))
    assert len(cached) == 1
    cached[0].write_text("{damaged")  # a damaged cache is rebuilt, not trusted
    assert len(load_dataset("stdlib_docstrings", min_chars=40)) == len(df)
    with pytest.raises(ValueError):
        load_dataset("stdlib_docstrings", min_chars=0)


def test_minilm_folder_is_verified():
    folder = load_dataset("minilm_l6_v2")
    assert (folder / "model.safetensors").stat().st_size == 90_868_376
    assert (folder / "vocab.txt").exists() and (folder / "config.json").exists()


def test_online_loaders_fail_offline_with_the_alternative(data_cache, monkeypatch):
    from bigmodel_utils.data import OfflineError

    monkeypatch.setenv("BIGMODEL_OFFLINE", "1")
    for name, alt in [("mnist", "digits"), ("fashion_mnist", "digits"), ("imdb", "reviews_zh")]:
        with pytest.raises(OfflineError, match=f"'{alt}'"):
            load_dataset(name)


def test_sample_photo_is_a_real_grey_and_colour_image():
    grey = load_dataset("sample_photo")
    colour = load_dataset("sample_photo", grey=False)
    assert grey.shape == (427, 640) and colour.shape == (427, 640, 3)
    assert grey.dtype == np.float32 and 0.0 <= grey.min() and grey.max() <= 1.0 and grey.std() > 0.1


def test_online_loaders_parse_their_file_formats(tmp_path, monkeypatch):
    """The download itself needs the internet; the parsing is tested on small files in the same formats."""
    import gzip

    from bigmodel_utils.data import loaders

    rng = np.random.default_rng(0)
    x_tr, x_te = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    y_tr, y_te = np.array([0, 1, 2, 3, 4], dtype=np.uint8), np.array([5, 6], dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)

    def idx(array, path):  # the IDX format: magic (2 zero bytes, type, ndim), big-endian dims, raw bytes
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        with gzip.open(path, "wb") as fh:
            fh.write(header + array.tobytes())
        return path

    fashion = [idx(x_tr, tmp_path / "train-images-idx3-ubyte.gz"), idx(y_tr, tmp_path / "train-labels-idx1-ubyte.gz"),
               idx(x_te, tmp_path / "t10k-images-idx3-ubyte.gz"), idx(y_te, tmp_path / "t10k-labels-idx1-ubyte.gz")]
    seqs = np.empty(3, dtype=object)
    seqs[:] = [[1, 14, 22], [1, 5], [1, 7, 7, 9]]
    np.savez(tmp_path / "imdb.npz", x_train=seqs[:2], y_train=np.array([1, 0]), x_test=seqs[2:], y_test=np.array([1]))
    files = {"mnist": [tmp_path / "mnist.npz"], "fashion_mnist": fashion, "imdb": [tmp_path / "imdb.npz"]}
    monkeypatch.setattr(loaders, "fetch", lambda name: files[name])

    for name in ("mnist", "fashion_mnist"):
        x, y = load_dataset(name, split="all")
        assert x.shape == (7, 28, 28) and x.dtype == np.float32 and np.isclose(x.max(), x_tr.max() / 255)
        assert y.tolist() == [0, 1, 2, 3, 4, 5, 6]
        assert np.array_equal(load_dataset(name, split="test")[0], x_te / np.float32(255.0))
    seq_train, labels = load_dataset("imdb", split="train")
    assert [s.tolist() for s in seq_train] == [[1, 14, 22], [1, 5]] and labels.tolist() == [1, 0]


def test_every_public_name_of_the_package_resolves():
    import bigmodel_utils.data as data

    assert all(getattr(data, name) for name in data.__all__)  # load_dataset too, imported on first use
    assert data.load_dataset is load_dataset
