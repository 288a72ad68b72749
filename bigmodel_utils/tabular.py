"""Tabular data, prepared properly (chapter 03; reused by chapters 04 and 08).

The raw Palmer penguins table is cleaned by :func:`clean_penguins`, split by :func:`split_frame`
(shuffled, stratified, fixed seed) and turned into model inputs by the scikit-learn pipeline of
:func:`make_preprocessor`, whose imputers and scaler are fitted on the training split only.
"""

from __future__ import annotations

import numpy as np

#: Numeric measurements of the cleaned table, in their units.
PENGUIN_NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "delta_15n", "delta_13c"]
#: Categorical columns of the cleaned table (``species`` and ``sex`` double as targets).
PENGUIN_CATEGORICAL = ["island", "sex", "species"]

_RENAME = {
    "Species": "species",
    "Island": "island",
    "Sex": "sex",
    "Individual ID": "individual_id",
    "Clutch Completion": "clutch_completion",
    "Date Egg": "date_egg",
    "Culmen Length (mm)": "bill_length_mm",
    "Culmen Depth (mm)": "bill_depth_mm",
    "Flipper Length (mm)": "flipper_length_mm",
    "Body Mass (g)": "body_mass_g",
    "Delta 15 N (o/oo)": "delta_15n",
    "Delta 13 C (o/oo)": "delta_13c",
}
_MORPHOMETRIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def clean_penguins(raw):
    """Tidy the raw penguins table (``load_dataset("penguins_raw")``); returns a new DataFrame.

    - keep the columns a model can use, with short snake_case names;
    - species as one word (``Adelie``, ``Chinstrap``, ``Gentoo``); sex as ``male``/``female``, and any
      other code (some copies of this table have ``"."``) as missing, never as a third sex;
    - ``date_egg`` as a date, ``clutch_completion`` as a boolean, ``year`` from the date;
    - drop the birds with no body measurement at all (nothing to learn from) and exact duplicate rows.

    Missing values that remain (sex, isotopes) are left as NaN on purpose: they are imputed inside the
    model pipeline, from training data only, never filled with 0 here.
    """
    import pandas as pd

    missing = [c for c in _RENAME if c not in raw.columns]
    if missing:
        raise KeyError(f"not the raw penguins table: columns {missing} are missing (use load_dataset('penguins_raw'))")
    df = raw[list(_RENAME)].rename(columns=_RENAME).copy()
    df["species"] = df["species"].str.split().str[0].astype("category")
    sex = df["sex"].str.strip().str.lower()  # NaN stays NaN (not pd.NA, which scikit-learn cannot impute)
    df["sex"] = pd.Categorical(sex.where(sex.isin(["male", "female"])), categories=["female", "male"])
    df["island"] = df["island"].astype("category")
    df["clutch_completion"] = df["clutch_completion"].map({"Yes": True, "No": False}).astype("boolean")
    df["date_egg"] = pd.to_datetime(df["date_egg"], errors="coerce")
    df["year"] = df["date_egg"].dt.year.astype("Int64")
    df = df[df[_MORPHOMETRIC].notna().any(axis=1)]
    df = df.drop_duplicates()
    return df.reset_index(drop=True)


def split_frame(df, target: str, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0):
    """Shuffled, stratified train/validation/test split of ``df`` by ``target``; returns three frames.

    Rows whose ``target`` is missing are dropped first (they cannot be scored). The same seed always
    gives the same split.
    """
    from sklearn.model_selection import train_test_split

    if target not in df.columns:
        raise KeyError(f"target column {target!r} is not in the table (columns: {', '.join(map(str, df.columns))})")
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three positive numbers that sum to 1, got {fractions}")
    df = df[df[target].notna()]
    train, rest = train_test_split(df, train_size=fractions[0], stratify=df[target], random_state=seed)
    val_share = fractions[1] / (fractions[1] + fractions[2])
    val, test = train_test_split(rest, train_size=val_share, stratify=rest[target], random_state=seed)
    return train, val, test


def make_preprocessor(numeric: list[str], categorical: list[str]):
    """A ``ColumnTransformer``: numeric columns median-imputed then standardised, categorical columns
    most-frequent-imputed then one-hot encoded (unknown categories at predict time become all zeros).

    Fit it on the training split only (``fit_transform(train)``, then ``transform(val)``,
    ``transform(test)``): every statistic it learns, medians, means, standard deviations, categories,
    then comes from training data.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if not numeric and not categorical:
        raise ValueError("make_preprocessor needs at least one numeric or categorical column")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ValueError(f"columns {sorted(overlap)} are listed as both numeric and categorical")
    transformers = []
    if numeric:
        transformers.append(("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), list(numeric)))
    if categorical:
        transformers.append((
            "cat",
            Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                      ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]),
            list(categorical),
        ))
    return ColumnTransformer(transformers, verbose_feature_names_out=False)


def penguin_arrays(target: str = "sex", seed: int = 0, features: tuple[list[str], list[str]] | None = None):
    """The prepared penguins task used from chapter 04 on, in one call.

    Loads and cleans the raw table, splits it by ``target`` (``"sex"``: a binary task, or ``"species"``),
    fits the preprocessor on the training split and returns a dict with ``x_train``, ``y_train``,
    ``x_val``, ``y_val``, ``x_test``, ``y_test`` (float32 features, int64 labels), ``classes`` and the
    fitted ``preprocessor``. The target column is never among the features.
    """
    from bigmodel_utils.data import load_dataset

    if target not in ("sex", "species"):
        raise ValueError(f"target must be 'sex' or 'species', got {target!r}")
    numeric, categorical = features or (PENGUIN_NUMERIC, [c for c in PENGUIN_CATEGORICAL if c != target])
    if target in numeric or target in categorical:
        raise ValueError(f"the target {target!r} must not also be a feature")
    df = clean_penguins(load_dataset("penguins_raw"))
    train, val, test = split_frame(df, target, seed=seed)
    pre = make_preprocessor(numeric, categorical)
    classes = sorted(df[target].dropna().unique().tolist())
    code = {c: i for i, c in enumerate(classes)}
    out = {"classes": classes, "preprocessor": pre}
    out["x_train"] = pre.fit_transform(train).astype(np.float32)
    for name, part in (("train", train), ("val", val), ("test", test)):
        if name != "train":
            out[f"x_{name}"] = pre.transform(part).astype(np.float32)
        out[f"y_{name}"] = part[target].map(code).to_numpy(dtype=np.int64)
    out["feature_names"] = list(pre.get_feature_names_out())
    return out
