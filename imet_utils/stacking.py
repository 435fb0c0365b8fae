"""A second level (stacking) over the first level's blended probabilities, cross-fitted over the OOF folds.

For each image, its ``TOP_CANDIDATES`` most probable classes are candidates; one gradient-boosted model
(scikit-learn's ``HistGradientBoostingClassifier``) over every (image, candidate) pair gives the new
probability, and classes outside the candidates get 0. Its features (``FEATURES``) come from the blended
probabilities (what test_probs.npz saves) and from statistics of training labels: the class's prior and,
from label co-occurrence, ``sum/max over the image's other candidates c' of P(c | c') * p(c')``.

Cross-fitting: for fold k, the label statistics and the model come from the other folds only (per-fold
sums, less fold k), and fold k's pairs are predicted; no row sees its own fold's labels. The training rows'
features likewise come from the folds other than their own (and k): they never count their own labels. The
decision rules are then chosen on the cross-fitted matrix (``choose_rule``), and the second level is used
only when its cross-fitted F2 beats the best first-level rule's. For the test images it is refitted on all
OOF rows. The model trains on the candidates of at most ``MAX_TRAIN_PAIRS // TOP_CANDIDATES`` sampled images.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from imet_utils.decision import choose_rule
from imet_utils.metrics import BASELINE_MAX_LABELS, BASELINE_MIN_LABELS, column_view, row_blocks, top_k

TOP_CANDIDATES = 24  # classes per image the second level scores; the rest get 0 (max_labels is at most 10)
MAX_TRAIN_PAIRS = 300_000  # (image, class) pairs a fit trains on, all candidates of sampled images
COOC_SMOOTHING = 10.0  # P(c | c') is shrunk toward P(c) as if from this many more images with c'
MODEL_PARAMS = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
FEATURES = (
    "p",
    "rank",
    "p_over_top",
    "row_top",
    "row_sum",
    "group_top",
    "group_sum",
    "group",
    "log_prior",
    "p_over_class_mean",
    "cooc_sum",
    "cooc_max",
)


@dataclasses.dataclass
class LabelStats:
    """What the features learn from training rows: counts of labels and pairs, column sums of probabilities."""

    n: int
    counts: np.ndarray  # (classes,) images with each label
    pairs: np.ndarray  # (classes, classes) images with both labels
    prob_sum: np.ndarray  # (classes,) sum of each class's probability

    @classmethod
    def of(cls, y: np.ndarray, probs: np.ndarray) -> LabelStats:
        from scipy import sparse

        lab = sparse.csr_matrix(np.asarray(y) > 0, dtype=np.int64)
        return cls(
            n=len(y),
            counts=np.asarray(lab.sum(axis=0)).ravel(),
            pairs=(lab.T @ lab).toarray(),
            prob_sum=np.asarray(probs).sum(axis=0, dtype=np.float64),
        )

    def __sub__(self, other: LabelStats) -> LabelStats:
        return LabelStats(
            self.n - other.n, self.counts - other.counts, self.pairs - other.pairs, self.prob_sum - other.prob_sum
        )

    def __add__(self, other: LabelStats) -> LabelStats:
        return LabelStats(
            self.n + other.n, self.counts + other.counts, self.pairs + other.pairs, self.prob_sum + other.prob_sum
        )

    def tables(self) -> tuple:
        """(log prior, mean probability, cond) per class; ``cond[c', c]`` = smoothed P(c | c'), 0 on the diagonal."""
        prior = (self.counts + 1.0) / (self.n + 2.0)
        cond = (self.pairs + COOC_SMOOTHING * prior[None, :]) / (self.counts[:, None] + COOC_SMOOTHING)
        np.fill_diagonal(cond, 0.0)
        mean_p = np.maximum(self.prob_sum / max(self.n, 1), 1e-6)
        return np.log(prior).astype(np.float32), mean_p.astype(np.float32), cond.astype(np.float32)


def candidates(probs: np.ndarray, k: int = TOP_CANDIDATES) -> np.ndarray:
    """(n, k) column indices of each row's ``k`` most probable classes, most probable first."""
    return (
        np.concatenate([top_k(np.asarray(probs[b]), k) for b in row_blocks(*probs.shape)])
        if len(probs)
        else np.zeros((0, min(k, probs.shape[1])), np.intp)
    )


def pair_features(probs: np.ndarray, cands: np.ndarray, groups: dict[str, np.ndarray], tables: tuple) -> np.ndarray:
    """(n * k, len(FEATURES)) float32 features of each row's candidates, row-major (see FEATURES)."""
    log_prior, mean_p, cond = tables
    n, k = cands.shape
    gid = np.zeros(probs.shape[1], np.intp)
    names = list(groups)
    for i, g in enumerate(names):
        gid[np.asarray(groups[g])] = i
    out = np.empty((n, k, len(FEATURES)), np.float32)
    for b in row_blocks(n, probs.shape[1]):
        block, c = np.asarray(probs[b], dtype=np.float32), cands[b]
        p = np.take_along_axis(block, c, axis=1)
        top = np.maximum(p[:, :1], 1e-12)
        g_top = (
            np.stack([block[:, column_view(groups[g])].max(axis=1) for g in names], axis=1)
            if names
            else np.zeros((len(block), 1), np.float32)
        )
        g_sum = (
            np.stack([block[:, column_view(groups[g])].sum(axis=1) for g in names], axis=1)
            if names
            else np.zeros((len(block), 1), np.float32)
        )
        cg = gid[c]
        co = cond[c[:, None, :], c[:, :, None]] * p[:, None, :]  # [i, j, l] = P(c_j | c_l) p_l
        out[b] = np.stack(
            [
                p,
                np.broadcast_to(np.arange(k, dtype=np.float32), p.shape),
                p / top,
                np.broadcast_to(top, p.shape),
                np.broadcast_to(block.sum(axis=1, keepdims=True), p.shape),
                np.take_along_axis(g_top, cg, axis=1),
                np.take_along_axis(g_sum, cg, axis=1),
                cg.astype(np.float32),
                log_prior[c],
                p / mean_p[c],
                co.sum(axis=2),
                co.max(axis=2),
            ],
            axis=2,
        )
    return out.reshape(n * k, len(FEATURES))


@dataclasses.dataclass
class SecondLevel:
    """A fitted second level: the label statistics it was fitted with and the model."""

    tables: tuple
    model: object
    groups: dict[str, np.ndarray]
    k: int

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """The second level's (n, classes) float32 probabilities; 0 outside each row's candidates."""
        out = np.zeros(probs.shape, np.float32)
        for b in row_blocks(len(probs), 64 * self.k):
            cands = candidates(probs[b], self.k)
            x = pair_features(probs[b], cands, self.groups, self.tables)
            np.put_along_axis(out[b], cands, self.model.predict_proba(x)[:, 1].reshape(cands.shape), axis=1)
        return out


def fit_second_level(
    y: np.ndarray,
    probs: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    stats: LabelStats,
    rows: np.ndarray | None = None,
    parts: tuple | None = None,
    k: int = TOP_CANDIDATES,
    max_pairs: int = MAX_TRAIN_PAIRS,
    seed: int = 0,
) -> SecondLevel:
    """Fits the second level on the candidates of (a sample of) ``rows``; it predicts with features from ``stats``.

    Args:
        stats: label statistics of the training rows only (``LabelStats.of`` their y and probs).
        rows: the training rows (default: all); at most ``max_pairs // k`` of them are sampled.
        parts: (part of each row, LabelStats per part): a training row's features use its part's statistics
            (those of the training rows outside its fold), so that its co-occurrence and prior features never
            count its own labels, as a predicted row's don't. None: every training row uses ``stats``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    k = min(k, probs.shape[1])
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(rows, size=min(len(rows), max(1, max_pairs // k)), replace=False))
    part, part_stats = (np.zeros(len(y), np.intp), [stats]) if parts is None else parts
    cands = candidates(probs[rows], k)
    x = np.empty((len(rows), k, len(FEATURES)), np.float32)
    for p, p_stats in enumerate(part_stats):
        sel = np.flatnonzero(part[rows] == p)
        if len(sel):
            x[sel] = pair_features(probs[rows[sel]], cands[sel], groups, p_stats.tables()).reshape(len(sel), k, -1)
    target = np.take_along_axis(np.asarray(y[rows]) > 0, cands, axis=1).ravel()
    if target.all() or not target.any():
        raise ValueError("the second level needs positive and negative candidates to fit")
    model = HistGradientBoostingClassifier(random_state=seed, **MODEL_PARAMS)
    model.fit(x.reshape(-1, len(FEATURES)), target)
    return SecondLevel(tables=stats.tables(), model=model, groups=groups, k=k)


def fold_stats(y: np.ndarray, probs: np.ndarray, fold_of: np.ndarray, n_folds: int) -> list:
    """Each fold's LabelStats (the statistics of 'all folds but k' are the total less fold k's)."""
    return [LabelStats.of(y[fold_of == f], probs[fold_of == f]) for f in range(n_folds)]


def crossfit_probs(
    y: np.ndarray,
    probs: np.ndarray,
    folds: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    k: int = TOP_CANDIDATES,
    max_pairs: int = MAX_TRAIN_PAIRS,
    seed: int = 0,
) -> np.ndarray:
    """The second level's probabilities of every OOF row, each predicted by a fit on the other folds only (whose
    training rows' features come from the folds other than theirs and the held one)."""
    fold_ids, fold_of = np.unique(folds, return_inverse=True)
    if len(fold_ids) < 2:
        raise ValueError("cross-fitting the second level needs at least 2 folds")
    per_fold = fold_stats(y, probs, fold_of, len(fold_ids))
    total = sum(per_fold[1:], per_fold[0])
    out = np.zeros(probs.shape, np.float32)
    for f in range(len(fold_ids)):
        held, train = total - per_fold[f], np.flatnonzero(fold_of != f)
        level = fit_second_level(
            y,
            probs,
            groups,
            stats=held,
            rows=train,
            k=k,
            max_pairs=max_pairs,
            seed=seed + f,
            parts=(fold_of, [held - s if len(fold_ids) > 2 else held for s in per_fold]),
        )
        out[fold_of == f] = level.predict(probs[fold_of == f])
    return out


def refit_second_level(
    y: np.ndarray,
    probs: np.ndarray,
    folds: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    k: int = TOP_CANDIDATES,
    max_pairs: int = MAX_TRAIN_PAIRS,
    seed: int = 0,
) -> SecondLevel:
    """The second level fitted on all OOF rows, for the test images (statistics of all rows)."""
    fold_ids, fold_of = np.unique(folds, return_inverse=True)
    per_fold = fold_stats(y, probs, fold_of, len(fold_ids))
    total = sum(per_fold[1:], per_fold[0])
    return fit_second_level(
        y,
        probs,
        groups,
        stats=total,
        k=k,
        max_pairs=max_pairs,
        seed=seed,
        parts=(fold_of, [total - s for s in per_fold]),
    )


@dataclasses.dataclass
class Stacking:
    """``choose_second_level``'s result."""

    entry: dict  # decision.json's ``second_level``
    level: SecondLevel | None  # refitted on all OOF rows; None unless chosen
    rule: dict | None  # choose_rule's result on the cross-fitted probabilities; None unless chosen
    probs: np.ndarray | None  # the cross-fitted (n, classes) probabilities; None unless chosen


def choose_second_level(
    y: np.ndarray,
    probs: np.ndarray,
    folds: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    first: dict,
    grid: np.ndarray,
    rules: Sequence[str],
    min_labels: int = BASELINE_MIN_LABELS,
    max_labels: int = BASELINE_MAX_LABELS,
    k: int = TOP_CANDIDATES,
    max_pairs: int = MAX_TRAIN_PAIRS,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> Stacking:
    """Cross-fits the second level, chooses a rule on its probabilities, and keeps it only if it wins.

    Args:
        first: ``choose_rule``'s result on the first level's probabilities (the same folds and rules).

    Returns:
        A ``Stacking``; its ``entry`` (``oof_f2``, ``first_level_oof_f2``, ``chosen``, ``rule``, ``params``,
        ``features``...) is recorded whether or not the second level wins. With a single fold nothing can be
        cross-fitted: it is skipped (not chosen).
    """
    start = time.perf_counter()
    entry = _second_level_entry(first, n_classes=probs.shape[1], k=k, max_pairs=max_pairs)
    if len(np.unique(folds)) < 2:
        log("second level skipped: cross-fitting needs at least 2 folds of OOF")
        return Stacking({**entry, "skipped": "fewer than 2 folds"}, None, None, None)
    stacked = crossfit_probs(y, probs, folds, groups, k=k, max_pairs=max_pairs, seed=seed)
    second = choose_rule(
        y, stacked, folds, groups, grid=grid, rules=rules, min_labels=min_labels, max_labels=max_labels
    )
    if not _record_comparison(entry, second, log=log):
        entry["seconds"] = round(time.perf_counter() - start, 1)
        return Stacking(entry, None, None, None)
    level = refit_second_level(y, probs, folds, groups, k=k, max_pairs=max_pairs, seed=seed)
    entry["seconds"] = round(time.perf_counter() - start, 1)
    return Stacking(entry, level, second, stacked)


def _second_level_entry(first: dict, *, n_classes: int, k: int, max_pairs: int) -> dict:
    """The decision record's second-level entry before any fitting: the first level's best F2, not chosen."""
    params = {
        **MODEL_PARAMS,
        "top_candidates": int(min(k, n_classes)),
        "max_train_pairs": max_pairs,
        "cooc_smoothing": COOC_SMOOTHING,
        "model": "HistGradientBoostingClassifier",
    }
    return {
        "oof_f2": None,
        "first_level_oof_f2": max(first["oof_f2"].values()),
        "chosen": False,
        "params": params,
        "features": list(FEATURES),
    }


def _record_comparison(entry: dict, second: dict, *, log: Callable[[str], None]) -> bool:
    """Records the second level's rule and F2 in ``entry``, logs it against the first level's; True if it wins."""
    best_first = entry["first_level_oof_f2"]
    f2 = second["oof_f2"][second["chosen"]]
    chosen = bool(f2 > best_first)
    entry.update(
        oof_f2=f2, chosen=chosen, rule=second["chosen"], rule_params=second["params"], oof_f2_by_rule=second["oof_f2"]
    )
    log(
        f"second level: cross-fitted OOF F2 {f2:.4f} ({second['chosen']}) vs first level {best_first:.4f}: "
        f"{'chosen' if chosen else 'not chosen'}"
    )
    return chosen
