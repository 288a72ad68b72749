"""Adapting chapter 13's GPT to a task (chapter 14): control tokens, their training rows, a judge, prompts.

- :func:`add_tokens` grows the vocabulary of a trained GPT by new tokens (``[POS]``, ``[NEG]``), the rest of
  its weights unchanged;
- :func:`control_rows` turns labelled texts into training rows ``[SEP] [control] text [SEP]`` with a loss
  weight that is zero on padding and on the control token itself (the model learns to *follow* it, never to
  write it);
- :func:`sentiment_judge` is chapter 06's TF-IDF + logistic-regression classifier, which scores generated text;
- :func:`longest_shared_substring` measures how much of a sample is copied from the training texts;
- :func:`label_log_probabilities` scores label words after a prompt, to use a language model as a classifier.
"""

from __future__ import annotations

import numpy as np

from bigmodel_utils.models.bert import CharTokenizer


def add_tokens(model, tokenizer: CharTokenizer, tokens, like=None, seed: int = 0):
    """A copy of ``model`` (:func:`~bigmodel_utils.models.gpt.build_gpt`) whose vocabulary ends with ``tokens``.

    Every weight is copied. The new rows of the token embedding (which is also the output layer) are copies of
    the rows of the tokens ``like`` (one per new token: ``[POS]`` starts as ``好``), or, without ``like``, drawn
    at random with the standard deviation of the existing rows (distinct, meaning nothing yet).
    Returns ``(new_model, new_tokenizer)``.
    """
    from bigmodel_utils.models.gpt import build_gpt, gpt_shape
    from bigmodel_utils.models.transformer import keras

    tokens = list(tokens)
    clash = [t for t in tokens if t in tokenizer._index]
    if clash or len(set(tokens)) != len(tokens) or not tokens:
        raise ValueError(f"new tokens must be distinct and not in the vocabulary already, got {tokens}")
    shape = gpt_shape(model)
    bigger = CharTokenizer(tokenizer.vocabulary + tokens)
    new = build_gpt(len(bigger), shape.max_positions, shape.d_model, shape.n_layers, shape.n_heads, shape.ff,
                    name=model.name)
    old_table = keras.ops.convert_to_numpy(model.get_layer("embeddings").tokens.embeddings)
    if like is None:
        rows = np.random.default_rng(seed).normal(0.0, old_table.std(), (len(tokens), old_table.shape[1]))
    else:
        like = list(like)
        missing = [t for t in like if t not in tokenizer._index]
        if len(like) != len(tokens) or missing:
            raise ValueError(f"like names one existing token per new token; got {like} for {tokens} (not in the "
                             f"vocabulary: {missing})")
        rows = old_table[[tokenizer._index[t] for t in like]]
    for old, fresh in zip(model.weights, new.weights):
        value = keras.ops.convert_to_numpy(old)
        if value.shape != tuple(fresh.shape):  # the token embedding: the old rows, then the new ones
            value = np.concatenate([value, rows.astype(value.dtype)])
        fresh.assign(value)
    return new, bigger


def control_rows(tokenizer: CharTokenizer, texts, controls, length: int):
    """Training rows for conditional generation: ``x`` and ``y`` ``(n, length)`` int32, ``weight`` float32.

    Text ``i`` becomes ``[SEP] controls[i] characters [SEP]`` (the text's first ``length - 1`` characters when it
    is longer), ``x`` is that row without its last token and ``y`` without its first, padded with ``[PAD]``.
    ``weight`` is 1 where ``y`` is a character or the closing ``[SEP]``, 0 on padding and where ``y`` is the
    control token: predicting the label is not the task. ``controls[i]`` is a token of the vocabulary
    (``"[POS]"``) or its id.
    """
    texts = list(texts)
    controls = list(controls)
    if len(texts) != len(controls):
        raise ValueError(f"{len(texts)} texts but {len(controls)} control tokens: give one per text")
    if int(length) < 3:
        raise ValueError(f"length must be at least 3 ([SEP], the control token, a character), got {length}")
    index, unk, sep = tokenizer._index, tokenizer.unk_id, tokenizer.sep_id
    rows = []
    for row, (text, control) in enumerate(zip(texts, controls)):
        if not isinstance(text, str):
            raise TypeError(f"text {row} is {type(text).__name__}, not str")
        control_id = int(control) if not isinstance(control, str) else index.get(control)
        if control_id is None or not 0 <= control_id < len(tokenizer):
            raise ValueError(f"control token {control!r} of text {row} is not in the vocabulary: add it (add_tokens)")
        ids = [sep, control_id] + [index.get(c, unk) for c in text[: length - 1]] + [sep]
        rows.append((ids[: length + 1], 1))  # target 0 is the control token: not trained
    return shifted_rows(rows, length, tokenizer.pad_id)


def shifted_rows(rows, length: int, pad_id: int):
    """``x``, ``y`` ``(n, length)`` int32 and ``weight`` float32 from ``(ids, first)`` pairs: ``x`` is ``ids`` without
    its last token, ``y`` without its first (the next token at each position), both padded with ``pad_id``, and
    ``weight`` is 1 on targets ``first`` to the end of ``ids``, 0 before them and on padding."""
    x = np.full((len(rows), length), pad_id, np.int32)
    y = np.full((len(rows), length), pad_id, np.int32)
    weight = np.zeros((len(rows), length), np.float32)
    for row, (ids, first) in enumerate(rows):
        n = len(ids) - 1
        if n > length:
            raise ValueError(f"row {row} holds {n} targets; rows hold {length}")
        x[row, :n], y[row, :n] = ids[:-1], ids[1:]
        weight[row, first:n] = 1.0
    return x, y, weight


def sentiment_judge(texts, labels, C: float = 3.0):
    """Chapter 06's baseline as a judge: character 1-3-gram TF-IDF and logistic regression, fitted on ``texts``.

    Returns a fitted scikit-learn pipeline; ``judge.predict(generated_texts)`` gives 0 (negative) or 1.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    judge = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2),
                          LogisticRegression(C=C, max_iter=2000))
    return judge.fit(list(texts), np.asarray(labels))


def longest_shared_substring(text: str, corpus: str) -> str:
    """The longest piece of ``text`` that also occurs in ``corpus`` (all training texts joined with a separator)."""
    best, start = "", 0
    for end in range(1, len(text) + 1):  # grow a match while it occurs; slide its start when it stops occurring
        while start < end and text[start:end] not in corpus:
            start += 1
        if end - start > len(best):
            best = text[start:end]
    return best


def label_log_probabilities(model, tokenizer: CharTokenizer, prompts, labels, batch: int = 64) -> np.ndarray:
    """``(len(prompts), len(labels))``: log P(label | prompt) under a GPT, each label's characters in turn.

    Each prompt is read after ``[SEP]`` (the start of a text) and must fit the context together with the longest
    label. Comparing the columns turns the language model into a classifier (chapter 14's prompting).
    """
    from bigmodel_utils.models.gpt import prompt_ids
    from bigmodel_utils.models.transformer import keras

    context = int(model.get_layer("embeddings").max_length)
    label_ids = [[tokenizer._index.get(c, tokenizer.unk_id) for c in label] for label in labels]
    out = np.zeros((len(prompts), len(labels)))
    rows, where = [], []
    for i, prompt in enumerate(prompts):
        base = prompt_ids(tokenizer, prompt)
        for j, ids in enumerate(label_ids):
            full = base + ids
            if len(full) > context:
                raise ValueError(f"prompt {i} and label {labels[j]!r} are {len(full)} tokens; the context holds {context}: "
                                 "shorten the prompt (fewer or shorter examples)")
            rows.append(full)
            where.append((i, j, len(base), len(ids)))
    width = max(len(r) for r in rows)
    x = np.full((len(rows), width), tokenizer.pad_id, np.int32)
    for r, ids in enumerate(rows):
        x[r, : len(ids)] = ids  # padding after the text: a causal model's earlier positions never see it
    for s in range(0, len(rows), batch):
        logits = keras.ops.convert_to_numpy(model(x[s:s + batch], training=False)).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        for r in range(s, min(s + batch, len(rows))):
            i, j, start, n = where[r]
            targets = x[r, start:start + n]
            out[i, j] = log_p[r - s, np.arange(start - 1, start - 1 + n), targets].sum()
    return out


def generate_guided(weights: dict, tokenizer: CharTokenizer, control: int, opposite: int, max_new_tokens: int,
                    guidance: float = 1.0, temperature: float = 0.7, top_p: float | None = 0.9,
                    rng: np.random.Generator | None = None, prompt: str = "") -> str:
    """A text that follows control token ``control``, pushed away from ``opposite`` (classifier-free guidance).

    Two texts are read side by side, one after ``[SEP] control``, one after ``[SEP] opposite``, each with its own
    KV cache, and every token is drawn from ``softmax((l_c + guidance·(l_c − l_o)) / temperature)`` (top-p), where
    ``l_c`` and ``l_o`` are their next-token logits; the drawn token is appended to both. ``guidance=0`` is plain
    sampling after ``control`` (and reads one text only). Sanchez et al. (2023) apply this guidance, first used for image models, to
    language models.
    """
    from bigmodel_utils.models.gpt import KVCache, forward_numpy, never_drawn, prompt_ids, sampling_probabilities, token_text

    if guidance < 0:
        raise ValueError(f"guidance must be non-negative (0: plain sampling), got {guidance}")
    rng = np.random.default_rng(0) if rng is None else rng
    context = weights["positions"].shape[0]
    fresh = [prompt_ids(tokenizer, prompt, [control]), prompt_ids(tokenizer, prompt, [opposite])]
    if len(fresh[0]) + max_new_tokens > context:
        raise ValueError(f"the prompt and {max_new_tokens} new tokens exceed the context of {context}")
    caches = [KVCache.empty(weights), KVCache.empty(weights)]
    banned = never_drawn(tokenizer)
    new: list[int] = []
    for _ in range(int(max_new_tokens)):
        logits = forward_numpy(weights, np.asarray([fresh[0]]), caches[0])[0, -1].astype(np.float64)
        if guidance:  # the second text only matters when it pushes: guidance 0 costs one pass, as plain sampling
            other = forward_numpy(weights, np.asarray([fresh[1]]), caches[1])[0, -1].astype(np.float64)
            logits = logits + guidance * (logits - other)
        logits[banned] = -np.inf
        p = sampling_probabilities(logits, temperature, None, top_p)
        token = int(rng.choice(len(p), p=p))
        if token == tokenizer.sep_id:
            break
        new.append(token)
        fresh = [[token], [token]]
    return "".join(token_text(tokenizer, i) for i in new)


def prompt_rows(tokenizer: CharTokenizer, prompts, answers, length: int):
    """Rows for instruction-style fine-tuning: ``[SEP] prompt answer [SEP]``, the loss on the answer only.

    Returns ``x``, ``y`` ``(n, length)`` int32 and ``weight`` float32, 1 where ``y`` is a character of the answer
    or the closing ``[SEP]``, 0 on the prompt and on padding: the model is taught to answer, not to write prompts.
    """
    prompts, answers = list(prompts), list(answers)
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers: give one answer per prompt")
    index, unk, sep = tokenizer._index, tokenizer.unk_id, tokenizer.sep_id
    rows = []
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        if not isinstance(prompt, str) or not isinstance(answer, str) or not answer:
            raise TypeError(f"row {row}: prompts and answers are strings, answers non-empty")
        head = [sep] + [index.get(c, unk) for c in prompt]
        tail = [index.get(c, unk) for c in answer] + [sep]
        if len(head) + len(tail) - 1 > length:
            raise ValueError(f"row {row} is {len(head) + len(tail) - 1} tokens; rows hold {length}: shorten the prompt")
        rows.append((head + tail, len(head) - 1))  # the loss starts where the answer does
    return shifted_rows(rows, length, tokenizer.pad_id)
