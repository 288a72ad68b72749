"""Byte-pair encoding trained from text, in plain Python (chapter 13).

BPE (Sennrich et al. 2016; GPT-2's tokenizer) starts from single characters and repeatedly merges the pair of
adjacent tokens that occurs most often in the training text into one new token, until the vocabulary has the
size asked for. Frequent words (for Chinese text: frequent two- and three-character words) become single
tokens; rare text stays in pieces.

:func:`train_bpe` is the merge loop as a learner can read it. It follows the rules of the ``tokenizers``
library's ``BpeTrainer`` (the most frequent pair wins; among pairs equally frequent, the one whose token ids
are smallest, ids given to the special tokens first, then to the characters in code-point order, then to each
merged token as it is made), so the two learn the same merges from the same texts: ``tests/test_bpe.py``
checks it. Each text is one "word" here (no pre-tokenizer), which suits Chinese, written without spaces.

Unknown characters: a character that the training text never contained encodes as ``[UNK]``, and decodes to
``[UNK]`` (the round trip keeps every known character and replaces unknown ones; tested).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ("[PAD]", "[UNK]")


@dataclass
class BytePairEncoding:
    """A trained BPE vocabulary: ``tokens`` (id -> string) and the ``merges`` in the order they were learned."""

    tokens: list[str]
    merges: list[tuple[str, str]]
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    _ids: dict[str, int] = field(default_factory=dict, repr=False)
    _ranks: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.special_tokens = tuple(self.special_tokens)
        if "[UNK]" not in self.special_tokens:
            raise ValueError("a BPE vocabulary needs the special token '[UNK]' for characters it never saw")
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("the vocabulary lists a token twice")
        self._ranks = {tuple(m): r for r, m in enumerate(self.merges)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return self._ids["[UNK]"]

    def token_id(self, token: str) -> int:
        return self._ids[token]

    def split(self, text: str) -> list[str]:
        """``text`` as tokens: its characters, then the learned merges applied in the order they were learned."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        pieces = [c if c in self._ids else "[UNK]" for c in text]
        while len(pieces) > 1:
            ranked = [(self._ranks.get(pair, len(self._ranks)), i) for i, pair in enumerate(zip(pieces, pieces[1:]))]
            rank, i = min(ranked)
            if rank == len(self._ranks):  # no learned merge applies any more
                break
            pair = self.merges[rank]
            merged, j = [], 0
            while j < len(pieces):  # merge every occurrence of this pair, left to right
                if j + 1 < len(pieces) and (pieces[j], pieces[j + 1]) == pair:
                    merged.append(pair[0] + pair[1])
                    j += 2
                else:
                    merged.append(pieces[j])
                    j += 1
            pieces = merged
        return pieces

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character never seen in training becomes ``[UNK]``."""
        return [self._ids[p] for p in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (``[PAD]`` dropped, ``[UNK]`` kept as the string ``"[UNK]"``)."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"token id {i} is not in this vocabulary of {len(self.tokens)} tokens")
            if self.tokens[i] != "[PAD]":
                out.append(self.tokens[i])
        return "".join(out)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"tokens": self.tokens, "merges": self.merges,
                                    "special_tokens": list(self.special_tokens)}, ensure_ascii=False),
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BytePairEncoding":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(list(data["tokens"]), [tuple(m) for m in data["merges"]], tuple(data["special_tokens"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a BPE vocabulary saved by BytePairEncoding.save ({error}): "
                             "train it again with train_bpe") from None


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...] = SPECIAL_TOKENS,
              min_frequency: int = 2) -> BytePairEncoding:
    """Learn a BPE vocabulary of (at most) ``vocab_size`` tokens from ``texts``: the merge loop.

    Start: the special tokens, then every character of the texts (code-point order). Then, until the
    vocabulary is full or no pair occurs ``min_frequency`` times: count every pair of adjacent tokens over
    all texts (a text that occurs twice counts twice), merge the most frequent pair everywhere, and add
    the merged token. Ties go to the pair with the smallest token ids, as in the ``tokenizers`` library.
    """
    if int(vocab_size) < 1 or int(min_frequency) < 1:
        raise ValueError(f"vocab_size and min_frequency must be positive, got {vocab_size}, {min_frequency}")
    words = Counter(t for t in texts if t)  # identical texts are split once, counted by their frequency
    if not words:
        raise ValueError("no text to learn from: pass a non-empty list of non-empty strings")
    tokens = list(special_tokens) + sorted({c for w in words for c in w} - set(special_tokens))
    ids = {t: i for i, t in enumerate(tokens)}
    pieces = {w: [ids[c] for c in w] for w in words}  # each distinct text as a list of token ids
    merges: list[tuple[str, str]] = []
    while len(tokens) < vocab_size:
        pairs: Counter = Counter()
        for w, n in words.items():
            p = pieces[w]
            for a, b in zip(p, p[1:]):
                pairs[a, b] += n
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], -pair[0], -pair[1]))  # most frequent; ties: smallest ids
        if pairs[best] < min_frequency:
            break
        text = tokens[best[0]] + tokens[best[1]]
        if text not in ids:  # ("a", "bc") and ("ab", "c") make the same token: it is added once
            ids[text] = len(tokens)
            tokens.append(text)
        new = ids[text]
        merges.append((tokens[best[0]], tokens[best[1]]))
        for w in words:
            p, merged, j = pieces[w], [], 0
            while j < len(p):
                if j + 1 < len(p) and (p[j], p[j + 1]) == best:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(p[j])
                    j += 1
            pieces[w] = merged
    return BytePairEncoding(tokens, merges, tuple(special_tokens))
