"""PNG plots for the kernels' output (matplotlib's object API: no global backend to set)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _figure(w: float = 10, h: float = 4):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100)


def plot_history(histories: dict[int, list[dict]], path: Path) -> Path:
    """Train loss and validation loss (solid and dashed) and validation F2 per epoch, one colour per fold."""
    fig = _figure()
    ax_loss, ax_f2 = fig.subplots(1, 2)
    for fold, rows in sorted(histories.items()):
        epochs = [r["epoch"] for r in rows]
        (line,) = ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o", label=f"fold {fold} loss")
        if all("val_loss" in r for r in rows):  # histories written before val_loss was kept have none
            ax_loss.plot(
                epochs,
                [r["val_loss"] for r in rows],
                marker="x",
                linestyle="--",
                color=line.get_color(),
                label=f"fold {fold} val_loss",
            )
        ax_f2.plot(epochs, [r["val_f2"] for r in rows], marker="o", label=f"fold {fold}")
    ax_loss.set(title="loss (solid) and val_loss (dashed)", xlabel="epoch")
    ax_f2.set(title="validation F2 (best threshold)", xlabel="epoch")
    for ax in (ax_loss, ax_f2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_fold_label_counts(counts: np.ndarray, path: Path, *, top: int = 60) -> Path:
    """Per-fold count of the ``top`` most frequent labels, and each label's deviation over all labels."""
    n_folds = counts.shape[0]
    totals = counts.sum(axis=0)
    order = np.argsort(-totals, kind="stable")[:top]
    fig = _figure(14, 7)
    ax_top, ax_dev = fig.subplots(2, 1)
    width = 0.8 / n_folds
    for k in range(n_folds):
        ax_top.bar(np.arange(len(order)) + k * width, counts[k, order], width=width, label=f"fold {k}")
    ax_top.set(title=f"label counts per fold (top {len(order)} labels)", xlabel="label rank", ylabel="images")
    ax_top.legend(ncol=n_folds)
    target = totals / n_folds
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(counts - target).max(axis=0) / target
    by_freq = np.argsort(-totals, kind="stable")
    ax_dev.plot(dev[by_freq], lw=0.8)
    ax_dev.set(
        title="max |count - n/K| / (n/K) per label, labels by frequency",
        xlabel="label rank",
        ylabel="deviation",
        yscale="symlog",
    )
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_threshold_curve(grid: Sequence[float], scores: Sequence[float], path: Path, *, title: str) -> Path:
    """F2 against threshold on out-of-fold predictions."""
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.plot(grid, scores, marker=".")
    best = int(np.argmax(scores))
    ax.axvline(grid[best], color="red", ls="--", label=f"best {grid[best]:.2f}: F2 {scores[best]:.4f}")
    ax.set(title=title, xlabel="threshold", ylabel="F2")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _image_grid(comp, ids: Sequence[str], titles: Sequence[str], path: Path, *, cols: int = 4) -> Path:
    import textwrap

    from imet_utils.images import BadImage, decode_image

    rows = max(1, (len(ids) + cols - 1) // cols)
    titles = ["\n".join(textwrap.fill(line, 42) for line in t.split("\n")) for t in titles]
    fig = _figure(4.5 * cols, 5.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img_id, title in zip(axes, ids, titles):
        try:
            ax.imshow(decode_image(comp.train_dir / f"{img_id}.png"))
        except BadImage:
            ax.text(0.5, 0.5, "unreadable", ha="center")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _names(labels, idx) -> str:
    return "\n".join(labels.names[i] for i in idx)


def plot_sample_images(comp, path: Path, *, n: int = 8, seed: int = 0) -> Path:
    """A grid of train images with their label names."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(comp.train), size=min(n, len(comp.train)), replace=False)
    ids = comp.train["id"].to_numpy()[rows]
    titles = [f"{i}\n{_names(comp.labels, comp.train['labels'].iloc[r])}" for i, r in zip(ids, rows)]
    return _image_grid(comp, ids, titles, path)


def plot_sample_predictions(
    comp, ids: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, path: Path, *, n: int = 8, seed: int = 0
) -> Path:
    """Out-of-fold predictions on train images: true label names against predicted ones."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(ids), size=min(n, len(ids)), replace=False)
    titles = []
    for r in rows:
        t, p = set(np.flatnonzero(y_true[r])), set(np.flatnonzero(y_pred[r]))
        titles.append(
            "true: "
            + ", ".join(comp.labels.names[i] for i in sorted(t))
            + "\npred: "
            + ", ".join(("" if i in t else "✗ ") + comp.labels.names[i] for i in sorted(p))
        )
    return _image_grid(comp, [ids[r] for r in rows], titles, path)


def show(path: Path) -> None:
    """Shows a saved plot inline in a notebook; in a script, logs where it is (Kaggle lists it in the output)."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:
            display(Image(filename=str(path)))
            return
    except ImportError:
        pass
    print(f"plot: {path}", flush=True)
