"""Scoring for local runs, the benches and the tests: never inlined into a kernel (no kernel calls these).

``f2_score`` scores a local run's submission against the generated solution (``kernel_build.local``);
``best_constant_f2`` is the floor a model must clearly beat; ``fit_rule`` fits one decision rule on all rows,
as ``choose_rule`` does for the rule it keeps.
"""

from __future__ import annotations

import numpy as np

from imet_utils.decision import choose_rule
from imet_utils.metrics import BASELINE_MAX_LABELS, BASELINE_MIN_LABELS, f2_per_sample

CONSTANT_MAX_K = 30  # best_constant_f2 tries the 1..30 most frequent labels


def f2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sample-averaged F2, the competition metric."""
    return float(f2_per_sample(y_true, y_pred).mean())


def best_constant_f2(y_true: np.ndarray) -> float:
    """F2 of the best constant prediction: the k most frequent labels, for the best k (1..``CONSTANT_MAX_K``).

    The floor a model must clearly beat.
    """
    freq = y_true.mean(axis=0)
    order = np.argsort(-freq, kind="stable")
    best = 0.0
    for k in range(1, min(len(order), CONSTANT_MAX_K) + 1):
        pred = np.zeros(y_true.shape[1], dtype=bool)
        pred[order[:k]] = True
        best = max(best, f2_score(y_true, np.broadcast_to(pred, y_true.shape)))
    return best


def fit_rule(
    rule: str,
    y: np.ndarray,
    probs: np.ndarray,
    groups: dict[str, np.ndarray],
    grid: np.ndarray,
    *,
    min_labels: int = BASELINE_MIN_LABELS,
    max_labels: int = BASELINE_MAX_LABELS,
) -> dict:
    """Fits one rule's parameters on all of (y, probs): ``choose_rule`` over one fold and that rule alone.

    Args:
        rule: a key of ``imet_utils.decision.RULES``.
        y: (n, classes) truth.
        probs: their probabilities.
        groups: group name -> class indices.
        grid: thresholds to try.
        min_labels: every image gets at least this many labels (>= 1); the search stays within.
        max_labels: and at most this many.

    Returns:
        ``{"rule": name, ...params, "min_labels_total": min_labels, "max_labels_total": max_labels}``.

    Raises:
        ValueError: an unknown rule (listing the known ones) or bad bounds.
    """
    one_fold = np.zeros(len(y), dtype=int)
    decision = choose_rule(
        y, probs, one_fold, groups, grid=grid, rules=(rule,), min_labels=min_labels, max_labels=max_labels
    )
    return decision["params"]
