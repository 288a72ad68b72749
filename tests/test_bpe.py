"""Chapter 13's byte-pair encoding: the plain-Python merge loop learns what the `tokenizers` library learns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigmodel_utils.models.bpe import BytePairEncoding, train_bpe


def _library_merges(texts, vocab_size, special_tokens=("[PAD]", "[UNK]")):
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))  # no pre-tokenizer: each text is one word, as ours
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), min_frequency=2,
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    state = tokenizer.to_str()
    import json

    model = json.loads(state)["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = sorted(model["vocab"], key=model["vocab"].get)
    return tokenizer, merges, vocab


@pytest.fixture(scope="module")
def reviews():
    from bigmodel_utils.data import load_dataset

    return load_dataset("reviews_zh", split="train")["text"].tolist()[:200]


@pytest.mark.parametrize("texts, vocab_size", [
    (["low lower lowest", "newer wider", "low low low", "wider newest"] * 3, 40),
    (["aaaa", "aaab", "abab", "baba"] * 2, 12),  # overlapping pairs and ties
])
def test_merges_equal_the_tokenizers_library_on_small_texts(texts, vocab_size):
    ours = train_bpe(texts, vocab_size)
    _, merges, vocab = _library_merges(texts, vocab_size)
    assert ours.merges == merges and ours.tokens == vocab


def test_merges_and_encodings_equal_the_library_on_reviews(reviews):
    # the special tokens, the characters, and 200 merges of 200 reviews (5 s; 300 merges of 400 reviews took 13 s)
    size = 2 + len(set("".join(reviews))) + 200
    ours = train_bpe(reviews, size)
    library, merges, vocab = _library_merges(reviews, size)
    assert len(ours.merges) > 150, "the vocabulary grew well past the characters"
    assert ours.merges == merges and ours.tokens == vocab
    held_out = ["这本书写得非常好，值得一读。", "质量太差了，用了两天就坏了。"]
    for text in held_out:
        assert ours.encode(text) == library.encode(text).ids
    assert any(len(t) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in t) for t in ours.tokens), "Chinese words merged"


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="low erniwdst", max_size=40))
def test_known_characters_round_trip_exactly(text):
    bpe = train_bpe(["low lower lowest", "newer wider", "low low low", "wider newest"] * 3, 40)
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=30))
def test_unknown_characters_become_unk_and_nothing_else_changes(text):
    bpe = train_bpe(["low lower lowest", "newer wider"] * 3, 30)
    known = set("".join(bpe.tokens[len(bpe.special_tokens):]))
    expected = "".join(c if c in known else "[UNK]" for c in text)
    assert bpe.decode(bpe.encode(text)) == expected


def test_save_load_and_clear_errors(tmp_path):
    bpe = train_bpe(["好书好书", "好的书"] * 3, 10)
    path = bpe.save(tmp_path / "bpe.json")
    again = BytePairEncoding.load(path)
    assert again.tokens == bpe.tokens and again.merges == bpe.merges and again.encode("好书") == bpe.encode("好书")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="train it again"):
        BytePairEncoding.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no text"):
        train_bpe(["", ""], 10)
    with pytest.raises(ValueError, match="token id 99"):
        bpe.decode([99])
    with pytest.raises(TypeError):
        bpe.encode(None)
    assert bpe.decode([0, *bpe.encode("好书"), 0]) == "好书", "padding decodes to nothing"
