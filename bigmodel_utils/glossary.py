"""The book-wide glossary: English terms and the seed articles' Chinese terms (data/glossary.csv).

Chapter 01 starts it; each chapter adds the terms it introduces (the ``chapter`` column).
"""

from __future__ import annotations

import csv

from bigmodel_utils.paths import REPO_ROOT

GLOSSARY_PATH = REPO_ROOT / "data" / "glossary.csv"


def glossary_rows(up_to_chapter: int | None = None) -> list[dict]:
    """Glossary entries as dicts (english, chinese, chapter, note), optionally up to a chapter."""
    if up_to_chapter is not None and (not isinstance(up_to_chapter, int) or up_to_chapter < 0):
        raise ValueError(f"up_to_chapter must be a non-negative chapter number, got {up_to_chapter!r}")
    with open(GLOSSARY_PATH, encoding="utf-8", newline="") as fh:
        rows = [dict(r, chapter=int(r["chapter"])) for r in csv.DictReader(fh)]
    if up_to_chapter is not None:
        rows = [r for r in rows if r["chapter"] <= up_to_chapter]
    return rows


def glossary(up_to_chapter: int | None = None):
    """The glossary as a pandas DataFrame, sorted by chapter then English term."""
    import pandas as pd

    df = pd.DataFrame(glossary_rows(up_to_chapter), columns=["english", "chinese", "chapter", "note"])
    return df.sort_values(["chapter", "english"], key=lambda s: s.str.lower() if s.dtype == object or str(s.dtype) == "str" else s).reset_index(drop=True)
