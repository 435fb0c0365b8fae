"""PNG plots for the kernels' output (matplotlib's object API: no global backend to set)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np


def _figure(w: float = 10, h: float = 4):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100)


def plot_history(histories: Dict[int, List[dict]], path: Path) -> Path:
    """Loss and validation F2 per epoch, one line per fold."""
    fig = _figure()
    ax_loss, ax_f2 = fig.subplots(1, 2)
    for fold, rows in sorted(histories.items()):
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o", label=f"fold {fold}")
        ax_f2.plot(epochs, [r["val_f2"] for r in rows], marker="o", label=f"fold {fold}")
    ax_loss.set(title="train loss", xlabel="epoch")
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
    ax_dev.set(title="max |count - n/K| / (n/K) per label, labels by frequency", xlabel="label rank",
               ylabel="deviation", yscale="symlog")
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
