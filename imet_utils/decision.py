"""Decision rules that turn probabilities into label sets, fitted and chosen on out-of-fold predictions.

Rules:
- ``global``: one threshold and one min/max label count (the seed's rule).
- ``per_group``: a threshold and min/max label count per label group (1st place 2019: culture 0.28 with
  0-3 labels, tags 0.1 with 1-8).
- ``per_class``: per-class thresholds, each shrunk toward its group's threshold by its number of positives,
  so rare classes keep the group's value.
- ``relative``: per image, p > factor * max(p) (1st place: factor 1/7), with min/max label counts.

``choose_rule`` scores every rule by cross-fitting over folds (fit on K-1 folds' OOF, score on the
held-out fold), picks the best, then refits it on all OOF. Choosing by in-sample F2 would favour the rule
with the most parameters.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from imet_utils.config import DECISION_RULES
from imet_utils.metrics import binarize, f2_score, threshold_grid

RULES = DECISION_RULES
MIN_LABEL_CHOICES = (0, 1, 2)
MAX_LABEL_CHOICES = (1, 2, 3, 4, 6, 8, 10)
RELATIVE_FACTORS = tuple(np.round(np.arange(0.05, 0.51, 0.01), 2))
SHRINK_POSITIVES = 20.0  # a class with this many positives gets half its own threshold, half its group's


class _GroupTable:
    """One label group's top-``TOP`` probabilities per row, sorted, with cumulative true counts, so that any
    (threshold, min, max) rule is scored from counts alone: tp = true labels among the top ``count``.
    No rule keeps more than ``TOP`` labels, so the rest of each row never matters."""

    TOP = max(MAX_LABEL_CHOICES)

    def __init__(self, y: np.ndarray, probs: np.ndarray):
        top = min(self.TOP, probs.shape[1])
        part = np.argpartition(-probs, top - 1, axis=1)[:, :top] if probs.shape[1] > top else \
            np.tile(np.arange(probs.shape[1]), (len(probs), 1))
        sub = np.take_along_axis(probs, part, axis=1)
        order = np.argsort(-sub, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        self.sorted = np.take_along_axis(probs, idx, axis=1)
        ys = np.take_along_axis(y.astype(np.int32), idx, axis=1)
        self.cumtrue = np.concatenate([np.zeros((len(y), 1), np.int32), np.cumsum(ys, axis=1)], axis=1)
        self.n_true = y.sum(axis=1).astype(np.int64)
        self.rows = np.arange(len(y))

    def above(self, threshold) -> np.ndarray:
        """How many of each row's top probabilities exceed ``threshold`` (a scalar or one per row)."""
        t = np.reshape(threshold, (-1, 1)) if np.ndim(threshold) else threshold
        return (self.sorted > t).sum(axis=1)

    def counts_from(self, above: np.ndarray, min_labels: int, max_labels: int) -> tuple:
        k = np.clip(above, min_labels, min(max_labels, self.sorted.shape[1]))
        tp = self.cumtrue[self.rows, k]
        return tp, k - tp, self.n_true - tp

    def counts(self, threshold: float, min_labels: int, max_labels: int) -> tuple:
        return self.counts_from(self.above(threshold), min_labels, max_labels)


def _f2_from_counts(tp, fp, fn) -> float:
    denom = 5 * tp + 4 * fn + fp
    return float(np.divide(5 * tp, denom, out=np.zeros(len(tp)), where=denom > 0).mean())


def _best_counts(table: _GroupTable, thresholds, rest, min_choices=MIN_LABEL_CHOICES) -> tuple:
    """The (threshold, min, max) maximising F2, with the other groups' counts ``rest`` held fixed."""
    best = (-1.0, None)
    for t in thresholds:
        above = table.above(t)
        for mn in min_choices:
            for mx in MAX_LABEL_CHOICES:
                if mx < max(mn, 1):
                    continue
                tp, fp, fn = table.counts_from(above, mn, mx)
                score = _f2_from_counts(tp + rest[0], fp + rest[1], fn + rest[2])
                if score > best[0]:
                    best = (score, (t, mn, mx))
    return best


def _fit_per_group(y, probs, groups: Dict[str, np.ndarray], grid, passes: int = 2, start: float = 0.2) -> dict:
    tables = {g: _GroupTable(y[:, idx], probs[:, idx]) for g, idx in groups.items()}
    params = {g: {"threshold": float(start), "min_labels": 0 if len(groups) > 1 else 1,
                  "max_labels": 10} for g in groups}
    parts = {g: tables[g].counts(**params[g]) for g in groups}
    for _ in range(passes if len(groups) > 1 else 1):
        for g in groups:
            rest = [sum((parts[h][i] for h in groups if h != g), 0) for i in range(3)]
            _, (t, mn, mx) = _best_counts(tables[g], grid, rest)
            params[g] = {"threshold": float(t), "min_labels": int(mn), "max_labels": int(mx)}
            parts[g] = tables[g].counts(**params[g])
    return params


def _at_least_one(pred: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The seed's promise: every image gets a label; an empty row takes its most probable one."""
    empty = pred.sum(axis=1) == 0
    pred[empty, np.argmax(probs[empty], axis=1)] = 1
    return pred


def _apply_per_group(params: dict, probs: np.ndarray, groups: Dict[str, np.ndarray]) -> np.ndarray:
    pred = np.zeros(probs.shape, dtype=np.uint8)
    for g, idx in groups.items():
        pred[:, idx] = binarize(probs[:, idx], **params[g])
    return _at_least_one(pred, probs)


def _class_thresholds(y, probs, grid) -> np.ndarray:
    """Each class's threshold maximising its own column F2 (a per-class search, vectorised over classes)."""
    best_t = np.full(y.shape[1], float(np.median(grid)))
    best_f = np.full(y.shape[1], -1.0)
    pos = y.sum(axis=0)
    for t in grid:
        pred = probs > t
        tp = (pred & (y > 0)).sum(axis=0)
        fp = pred.sum(axis=0) - tp
        fn = pos - tp
        denom = 5 * tp + 4 * fn + fp
        f = np.divide(5 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
        better = f > best_f
        best_t[better], best_f[better] = t, f[better]
    return best_t


def fit_rule(rule: str, y: np.ndarray, probs: np.ndarray, groups: Dict[str, np.ndarray],
             grid: np.ndarray) -> dict:
    """Fits one rule's parameters on (y, probs); returns ``{"rule": name, ...params}``."""
    if rule == "global":
        p = _fit_per_group(y, probs, {"all": np.arange(y.shape[1])}, grid)["all"]
        return {"rule": rule, **p}
    start = _fit_per_group(y, probs, {"all": np.arange(y.shape[1])}, grid)["all"]["threshold"]
    if rule == "per_group":
        return {"rule": rule, "groups": _fit_per_group(y, probs, groups, grid, start=start)}
    if rule == "per_class":
        base = _fit_per_group(y, probs, groups, grid, start=start)
        own = _class_thresholds(y, probs, grid)
        pos = y.sum(axis=0).astype(float)
        group_t = np.empty(y.shape[1])
        for g, idx in groups.items():
            group_t[idx] = base[g]["threshold"]
        weight = pos / (pos + SHRINK_POSITIVES)
        return {"rule": rule, "groups": base, "thresholds": np.round(weight * own + (1 - weight) * group_t, 4).tolist()}
    if rule == "relative":
        table = _GroupTable(y, probs)
        top = table.sorted[:, 0]
        best = (-1.0, None)
        for f in RELATIVE_FACTORS:
            above = table.above(top * f)
            for mx in MAX_LABEL_CHOICES:
                score = _f2_from_counts(*table.counts_from(above, 1, mx))
                if score > best[0]:
                    best = (score, {"rule": rule, "factor": float(f), "min_labels": 1, "max_labels": int(mx)})
        return best[1]
    raise ValueError(f"unknown decision rule {rule!r}; known: {list(RULES)}")


def apply_rule(params: dict, probs: np.ndarray, groups: Dict[str, np.ndarray]) -> np.ndarray:
    """Applies fitted parameters (from ``fit_rule`` or decision.json) to probabilities -> 0/1 matrix."""
    rule = params["rule"]
    if rule == "global":
        return binarize(probs, params["threshold"], min_labels=params["min_labels"], max_labels=params["max_labels"])
    if rule == "per_group":
        return _apply_per_group(params["groups"], probs, groups)
    if rule == "per_class":
        t = np.asarray(params["thresholds"])
        pred = np.zeros(probs.shape, dtype=np.uint8)
        for g, idx in groups.items():
            p = params["groups"][g]
            pred[:, idx] = binarize(probs[:, idx], t[idx], min_labels=p["min_labels"], max_labels=p["max_labels"])
        return _at_least_one(pred, probs)
    if rule == "relative":
        top = probs.max(axis=1, keepdims=True)
        return binarize(probs, top * params["factor"], min_labels=params["min_labels"],
                        max_labels=params["max_labels"])
    raise ValueError(f"unknown decision rule {rule!r}; known: {list(RULES)}")


def choose_rule(y: np.ndarray, probs: np.ndarray, folds: np.ndarray, groups: Dict[str, np.ndarray], *,
                grid: np.ndarray, rules: Sequence[str] = RULES,
                log: Callable[[str], None] = lambda s: None) -> dict:
    """Scores every rule by cross-fitting over folds, picks the best, refits it on all OOF.

    Args:
        y: (n, classes) truth of the OOF images.
        probs: their OOF probabilities.
        folds: fold of each OOF image.
        groups: group name -> class indices (from labels.csv).
        grid: thresholds to try.
        rules: which rules to compare.

    Returns:
        The content of decision.json: ``chosen``, ``params``, ``oof_f2`` (cross-fitted F2 of every rule),
        ``oof_f2_in_sample`` (each rule fitted and scored on all OOF, for reference).
    """
    fold_ids = np.unique(folds)
    crossfit, in_sample = {}, {}
    for rule in rules:
        pred = np.zeros(probs.shape, dtype=np.uint8)
        if len(fold_ids) > 1:
            for k in fold_ids:
                held = folds == k
                params = fit_rule(rule, y[~held], probs[~held], groups, grid)
                pred[held] = apply_rule(params, probs[held], groups)
            crossfit[rule] = f2_score(y, pred)
        full = fit_rule(rule, y, probs, groups, grid)
        in_sample[rule] = f2_score(y, apply_rule(full, probs, groups))
        if len(fold_ids) <= 1:
            crossfit[rule] = in_sample[rule]
        log(f"rule {rule}: cross-fitted OOF F2 {crossfit[rule]:.4f} (in-sample {in_sample[rule]:.4f})")
    chosen = max(rules, key=lambda r: (crossfit[r], -rules.index(r)))
    return {"chosen": chosen, "params": fit_rule(chosen, y, probs, groups, grid), "oof_f2": crossfit,
            "oof_f2_in_sample": in_sample}


def default_grid() -> np.ndarray:
    return threshold_grid(0.02, 0.6, 0.01)
