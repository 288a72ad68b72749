"""The book's recurring figures: training curves, image grids, confusion matrices (chapters 04-05, 08).

Each function draws into a new figure (or the ``ax`` given) and returns the figure, so a chapter can
save it or add to it. Nothing here calls ``plt.show()``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _history_dict(history: Any) -> dict[str, list[float]]:
    data = getattr(history, "history", history)
    if not isinstance(data, dict) or not data:
        raise TypeError("plot_history needs a keras History (model.fit's return value) or a non-empty dict of lists")
    return data


def plot_history(history: Any, metrics: Sequence[str] = ("loss", "accuracy"), title: str | None = None):
    """Training and validation curves, one panel per metric (chapter 04).

    ``history`` is what ``model.fit`` returns (or its ``.history`` dict). Validation curves
    (``val_<metric>``) are drawn when present. An unknown metric raises ``KeyError`` naming the
    available ones.
    """
    import matplotlib.pyplot as plt

    data = _history_dict(history)
    missing = [m for m in metrics if m not in data]
    if missing:
        raise KeyError(f"metrics {missing} are not in the history; available: {sorted(data)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), layout="constrained", squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        epochs = np.arange(1, len(data[metric]) + 1)
        ax.plot(epochs, data[metric], label="train")
        if f"val_{metric}" in data:
            ax.plot(epochs, data[f"val_{metric}"], label="validation")
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
    if title:
        fig.suptitle(title)
    return fig


def image_grid(
    images: np.ndarray,
    labels: Sequence[Any] | None = None,
    predictions: Sequence[Any] | None = None,
    ncols: int = 10,
    title: str | None = None,
    cmap: str = "gray_r",
):
    """Show images in a grid, with their labels, and predictions in red where they differ (chapter 05).

    ``images`` is (n, height, width) or (n, height, width, 1 or 3).
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images[..., 0] if images.shape[-1] == 1 else images
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"images must be a non-empty (n, height, width[, channels]) array, got shape {images.shape}")
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    for name, seq in (("labels", labels), ("predictions", predictions)):
        if seq is not None and len(seq) != len(images):
            raise ValueError(f"{len(images)} images but {len(seq)} {name}")
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(0.9 * ncols, 1.0 * nrows + (0.3 if title else 0)),
                             layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap=None if images.ndim == 4 else cmap)
        text, color = "", "black"
        if labels is not None:
            text = str(labels[i])
        if predictions is not None:
            if labels is None or predictions[i] != labels[i]:
                text = f"{text}→{predictions[i]}" if text else str(predictions[i])
                color = "tab:red" if labels is not None else "black"
        if text:
            ax.set_title(text, fontsize=8, color=color)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_confusion_matrix(y_true, y_pred, class_names: Sequence[Any] | None = None, normalize: bool = False, ax=None, title: str | None = None):
    """A confusion matrix with counts (or row-normalised shares) written in each cell (chapters 04-05, 08)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D and the same length, got {y_true.shape} and {y_pred.shape}")
    labels = np.arange(len(class_names)) if class_names is not None else np.unique(np.concatenate([y_true, y_pred]))
    cm = confusion_matrix(y_true, y_pred, labels=labels).astype(float)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = [str(n) for n in class_names] if class_names is not None else [str(v) for v in labels]
    if ax is None:
        size = max(3.0, 0.45 * len(names) + 1.5)
        fig, ax = plt.subplots(figsize=(size, size * 0.9), layout="constrained")
    else:
        fig = ax.figure
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45 if max(len(n) for n in names) > 3 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.grid(False)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            value = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, value, ha="center", va="center", fontsize=8, color="white" if cm[i, j] > threshold else "black")
    if title:
        ax.set_title(title)
    return fig


#: Fonts with Chinese glyphs, in order of preference (Linux, then macOS, then Windows names).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "PingFang SC", "Heiti SC", "Microsoft YaHei")
_cjk_note_shown = False


def find_cjk_font(candidates: Sequence[str] = CJK_FONTS) -> str | None:
    """The name of an installed font that can draw Chinese characters, or ``None`` (chapters 06-08)."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in candidates if name in installed), None)


def token_labels(tokens: Sequence[str], font: str | None = "auto") -> tuple[list[str], dict]:
    """Labels for plotting tokens (attention maps, saliency): the tokens themselves when they can be drawn,
    else their positions. Returns ``(labels, text_kwargs)`` to pass to ``set_xticklabels`` and friends.

    With ``font="auto"`` an installed CJK font is looked up; if none is found and a token needs one, the
    labels become positions ``"0", "1", ...`` and one short note says how to install a font, instead of a
    missing-glyph warning for every character.
    """
    global _cjk_note_shown
    tokens = [str(t) for t in tokens]
    needs_cjk = any(any(ord(ch) > 0x2E7F for ch in t) for t in tokens)
    if not needs_cjk:
        return tokens, {}
    name = find_cjk_font() if font == "auto" else font
    if name:
        return tokens, {"fontfamily": name}
    if not _cjk_note_shown:
        print("note: no font with Chinese characters is installed, so tokens are labelled by position "
              "(Debian/Ubuntu: apt install fonts-noto-cjk; then restart the kernel)")
        _cjk_note_shown = True
    return [str(i) for i in range(len(tokens))], {}


def plot_attention(weights, tokens: Sequence[str], title: str | None = None, max_cols: int = 4):
    """One heat map per head of a block's attention weights (heads, n, n): row = query, column = key.

    Chapter 07. Tokens label the axes through :func:`token_labels` (positions when no CJK font is installed).
    """
    import matplotlib.pyplot as plt

    weights = np.asarray(weights)
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2] or weights.shape[1] != len(tokens):
        raise ValueError(f"weights must be (heads, n, n) with n = {len(tokens)} tokens, got {weights.shape}")
    labels, text_kw = token_labels(tokens)
    heads = weights.shape[0]
    cols = min(heads, max_cols)
    rows = -(-heads // cols)
    size = 1.0 + 0.18 * len(tokens)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for h, ax in enumerate(axes.ravel()):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(weights[h], cmap="viridis", vmin=0.0, vmax=float(weights[h].max()))
        ax.grid(False)
        ax.set_title(f"head {h}")
        ax.set_xticks(range(len(labels)))
        ax.set_yticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7, rotation=90, **text_kw)
        ax.set_yticklabels(labels, fontsize=7, **text_kw)
        ax.set_xlabel("attends to (key)")
        if h % cols == 0:
            ax.set_ylabel("token (query)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
