"""F2 averaged over samples, the seed's binarize rule, and threshold search.

Pure numpy functions, tested against sklearn's ``fbeta_score(average='samples')``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

F_BETA = 2.0


def f2_per_sample(y_true: np.ndarray, y_pred: np.ndarray, beta: float = F_BETA) -> np.ndarray:
    """F-beta of each row of two 0/1 matrices; a row with nothing true and nothing predicted scores 0."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = np.count_nonzero(y_true & y_pred, axis=1).astype(np.float64)
    fp = np.count_nonzero(~y_true & y_pred, axis=1)
    fn = np.count_nonzero(y_true & ~y_pred, axis=1)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return np.divide((1 + b2) * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def f2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sample-averaged F2, the competition metric."""
    return float(f2_per_sample(y_true, y_pred).mean())


def _descending_ranks(probs: np.ndarray) -> np.ndarray:
    """rank[i, j] = position of class j in row i sorted by descending probability (ties: lower id first)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(probs.shape[1])[None, :], axis=1)
    return ranks


def binarize(probs: np.ndarray, threshold: float, *, min_labels: int = 1, max_labels: int = 10,
             ranks: np.ndarray | None = None) -> np.ndarray:
    """The seed's ``binarize_prediction``: p > threshold, then at least ``min_labels`` and at most ``max_labels``.

    Args:
        probs: (n, classes) probabilities.
        threshold: scalar, or an array broadcastable to ``probs`` (per class or per image).
        min_labels: rows with fewer labels take their top ``min_labels``.
        max_labels: rows with more labels keep their top ``max_labels``.
        ranks: precomputed descending ranks, to reuse across many thresholds.

    Returns:
        (n, classes) uint8 matrix.
    """
    probs = np.asarray(probs)
    ranks = _descending_ranks(probs) if ranks is None else ranks
    above = probs > threshold
    count = np.count_nonzero(above, axis=1)
    if np.ndim(threshold) == 0:
        # With one threshold, every class above it ranks before every class below it,
        # so "top `count` by rank" equals p > t and the clipping is a clip of count.
        count = np.clip(count, min_labels, max_labels)
        return (ranks < count[:, None]).astype(np.uint8)
    pred = above.copy()
    few = count < min_labels
    pred[few] = ranks[few] < min_labels
    many = count > max_labels
    if many.any():
        masked = np.where(above[many], probs[many], -np.inf)
        pred[many] = _descending_ranks(masked) < max_labels
    return pred.astype(np.uint8)


def f2_by_group(y_true: np.ndarray, y_pred: np.ndarray, groups: dict) -> dict:
    """Sample-averaged F2 restricted to each group's labels (images with no true label there are skipped)."""
    out = {}
    for name, idx in groups.items():
        t, p = y_true[:, idx], y_pred[:, idx]
        has = t.any(axis=1)
        out[name] = f2_score(t[has], p[has]) if has.any() else float("nan")
    return out


def threshold_grid(start: float, stop: float, step: float) -> np.ndarray:
    n = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(n), 6)


def search_threshold(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray, *, min_labels: int = 1,
                     max_labels: int = 10) -> Tuple[float, float, np.ndarray]:
    """Tries every threshold of ``grid``.

    Returns:
        (best threshold, its F2, F2 of every threshold in grid order).
    """
    ranks = _descending_ranks(probs)
    scores = np.array([
        f2_score(y_true, binarize(probs, t, min_labels=min_labels, max_labels=max_labels, ranks=ranks))
        for t in grid
    ])
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best]), scores


def best_constant_f2(y_true: np.ndarray) -> float:
    """F2 of the best constant prediction: the k most frequent labels, for the best k.

    The floor a model must clearly beat.
    """
    freq = y_true.mean(axis=0)
    order = np.argsort(-freq, kind="stable")
    best = 0.0
    for k in range(1, min(len(order), 30) + 1):
        pred = np.zeros(y_true.shape[1], dtype=bool)
        pred[order[:k]] = True
        best = max(best, f2_score(y_true, np.broadcast_to(pred, y_true.shape)))
    return best

