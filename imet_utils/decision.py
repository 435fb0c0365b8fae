"""Decision rules that turn probabilities into label sets, fitted and chosen on out-of-fold predictions.

Rules:
- ``global``: one threshold and one min/max label count (the 2019 baseline notebook's form; it fixed 1 and 10).
- ``per_group``: a threshold and min/max label count per label group (1st place 2019: culture 0.28 with
  0-3 labels, tags 0.1 with 1-8).
- ``per_class``: per-class thresholds, each shrunk toward its group's threshold by its number of positives,
  so rare classes keep the group's value.
- ``relative``: per image, p > factor * max(p) (1st place: factor 1/7), with min/max label counts.

Every rule also bounds the total labels per image: fitted parameters carry ``min_labels_total`` (>= 1, every
image gets a label) and ``max_labels_total``, and ``apply_rule`` enforces them last, whatever the
probabilities: a row with too few labels adds its most probable other classes, a row with too many keeps its
most probable ones (``metrics.bound_label_counts``). Parameters saved without these keys apply with the 2019
baseline notebook's bounds, 1 and 10.

Adding a rule is one entry of ``RULES`` and its functions, here: how it is fitted (from a ``_Fitter``), how it
selects labels on a block of rows, and optionally how its held-out F2 comes from the count tables (without it,
the rows are scored from the matrix). The config's ``decision_rules`` and the build check names against ``RULES``.

``choose_rule`` scores every rule by cross-fitting over folds (fit on K-1 folds' OOF, score on the
held-out fold), picks the best, and keeps its fit on all OOF. Choosing by in-sample F2 would favour the rule
with the most parameters. The best rule replaces ``global`` only if its per-image gain over it is clear: the
lower end of a paired bootstrap 95% interval above 0. On realistic data with noisy train labels a rule that won
on OOF by a hair lost 0.012 test F2 on clean labels (bench/RESULTS.md).

Speed: what the fits need is computed once from all OOF rows and subset per fold: each group's top
probabilities per row (``metrics.TopTable``: row-wise, so a fold is a row subset) and per-class histograms
over the grid (per fold: a fold's training counts are the total less its own). A threshold rule keeps a
prefix of each row's top probabilities, so its candidates and its held-out F2 come from counts; only
``per_class`` reads the matrix again, a block of rows at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from imet_utils.metrics import (
    BASELINE_MAX_LABELS,
    BASELINE_MIN_LABELS,
    TopTable,
    ascending_ranks,
    best_counts,
    binarize,
    bootstrap_interval,
    bound_label_counts,
    column_thresholds,
    column_view,
    f2_gains,
    f_beta_from_counts,
    grid_histograms,
    row_blocks,
    threshold_positions,
)

MIN_LABEL_CHOICES = (0, 1, 2)
MAX_LABEL_CHOICES = (1, 2, 3, 4, 6, 8, BASELINE_MAX_LABELS)
RELATIVE_FACTORS = tuple(np.round(np.arange(0.05, 0.51, 0.01), 2))
SHRINK_POSITIVES = 20.0  # a class with this many positives gets half its own threshold, half its group's
ALL = "all"  # the table over every class, for the global and relative rules
FALLBACK = "global"  # the simplest rule: kept unless another's cross-fitted gain over it is clear
GAIN_RESAMPLES = 400  # paired bootstrap resamples of the per-image gain


def _check_bounds(min_labels: int, max_labels: int) -> None:
    if min_labels < 1:
        raise ValueError(f"min_labels must be >= 1 (every image gets a label), got {min_labels}")
    if max_labels < min_labels:
        raise ValueError(f"max_labels must be >= min_labels, got max_labels {max_labels} < min_labels {min_labels}")


def _choices(lo: int, hi: int) -> tuple:
    """The (min, max) label counts a search tries for a count that must stay within [lo, hi]."""
    mins = tuple(sorted({min(max(m, lo), hi) for m in MIN_LABEL_CHOICES}))
    return mins, tuple(sorted({min(max(m, lo, 1), hi) for m in MAX_LABEL_CHOICES}))


def _total_bounds(params: dict) -> tuple:
    lo = max(1, int(params.get("min_labels_total", BASELINE_MIN_LABELS)))
    return lo, max(lo, int(params.get("max_labels_total", BASELINE_MAX_LABELS)))


_f2 = f_beta_from_counts  # (tp, n_true, labels kept) per row


class _Oof:
    """What fitting and scoring need from the OOF rows, computed once for every fold (see the module doc)."""

    def __init__(self, y, probs, folds, groups: dict[str, np.ndarray], grid, min_labels: int, max_labels: int):
        self.y, self.probs, self.groups = y, probs, groups
        self.grid = np.asarray(grid, dtype=np.float64)
        self.rank, self.bounds = ascending_ranks(self.grid), (min_labels, max_labels)
        self.fold_ids, self.fold_of = np.unique(folds, return_inverse=True)
        depth = min(probs.shape[1], max(_choices(min_labels, max_labels)[1]))
        tables = {g: TopTable.build(y, probs, idx, depth) for g, idx in groups.items()}
        every = np.sort(np.concatenate([np.asarray(i) for i in groups.values()])) if groups else []
        self.merged = None  # per row, the groups' tables merged by probability: (group, rank in group, true)
        if np.array_equal(every, np.arange(probs.shape[1])):
            tables[ALL], self.merged = self._merge(list(tables.values()), depth)
        else:
            tables[ALL] = TopTable.build(y, probs, np.arange(probs.shape[1]), depth)
        for t in tables.values():
            t.pos, t.cols, t.ys = threshold_positions(t.vals, self.grid), None, None
        self.tables, self._hist = tables, None

    @staticmethod
    def _merge(tables: Sequence[TopTable], depth: int) -> tuple:
        """The table over disjoint groups covering every class: the top of all is within the groups' tops."""
        vals, cols, ys = (np.concatenate([getattr(t, a) for t in tables], axis=1) for a in ("vals", "cols", "ys"))
        group = np.concatenate([np.full(t.vals.shape, i, np.int16) for i, t in enumerate(tables)], axis=1)
        rank = np.concatenate(
            [np.broadcast_to(np.arange(t.vals.shape[1], dtype=np.int16), t.vals.shape) for t in tables], axis=1
        )
        order = np.lexsort((cols, -vals), axis=-1)
        vals, cols, ys, group, rank = (np.take_along_axis(a, order, 1) for a in (vals, cols, ys, group, rank))
        whole = TopTable(vals[:, :depth], cols[:, :depth], ys[:, :depth], sum(t.n_true for t in tables))
        return whole, (group, rank, ys)

    def class_hist(self, held: int | None) -> tuple:
        """(classes, bins) histograms of all rows' probabilities and of the positives', less fold ``held``."""
        if self._hist is None:
            self._hist = grid_histograms(self.y, self.probs, self.fold_of, len(self.fold_ids), self.grid)
        return tuple(h.sum(axis=0) - (0 if held is None else h[held]) for h in self._hist)

    def fitter(self, held: int | None = None) -> _Fitter:
        """Fits on all rows, or on all but fold index ``held``."""
        rows = None if held is None else np.flatnonzero(self.fold_of != held)
        tables = self.tables if rows is None else {g: t.subset(rows) for g, t in self.tables.items()}
        return _Fitter(tables, lambda: self.class_hist(held), self.groups, self.grid, self.rank, self.bounds)

    def table_f2(self, params: dict, rows: np.ndarray) -> np.ndarray | None:
        """Each row's F2 from the tables (= apply_rule's labels), for a rule that registers ``fast_f2``; None
        for the others (or where the tables can't tell), which are scored from the matrix."""
        fast = get_rule(params["rule"]).fast_f2
        return None if fast is None else fast(self, params, rows)


class _Fitter:
    """Fits the rules on one set of rows; the global and per-group fits are shared by the rules built on them."""

    def __init__(self, tables: dict[str, TopTable], hist: Callable[[], tuple], groups, grid, rank, bounds):
        self.tables, self.hist, self.groups, self.grid, self.rank = tables, hist, groups, grid, rank
        self.lo, self.hi = bounds
        self._cache: dict = {}

    def global_fit(self) -> dict:
        """The ``global`` rule's (threshold, min, max); the per-group search starts from its threshold."""
        if "global" not in self._cache:
            t = self.tables[ALL]
            self._cache["gain"] = f2_gains(t, t.n_true)
            j, mn, mx = best_counts(t.pos, self._cache["gain"], *_choices(self.lo, self.hi), self.rank)
            self._cache["global"] = {"threshold": float(self.grid[j]), "min_labels": mn, "max_labels": mx}
        return self._cache["global"]

    def gains(self) -> np.ndarray:
        """The F2 gain of each row's top labels over the whole table (shared by the global and relative fits)."""
        self.global_fit()
        return self._cache["gain"]

    def per_group_fit(self, passes: int = 2) -> dict:
        """Coordinate ascent from the global threshold: each group's (threshold, min, max) in turn, the other
        groups' counts held fixed, scored before the total bounds (a group's minimum may be 0: apply_rule still
        gives every image its ``min_labels_total``)."""
        if "groups" in self._cache:
            return self._cache["groups"]
        names = list(self.groups)
        mins, maxs = _choices(self.lo if len(names) == 1 else 0, self.hi)
        params = {
            g: {"threshold": self.global_fit()["threshold"], "min_labels": mins[0], "max_labels": maxs[-1]}
            for g in names
        }
        kept = {g: self.tables[g].kept(**params[g]) for g in names}
        n_true = sum(self.tables[g].n_true for g in names).astype(np.int64)
        for _ in range(passes if len(names) > 1 else 1):
            for g in names:
                rest = [h for h in names if h != g]
                rest_tp = sum((self.tables[h].cumtrue[np.arange(len(n_true)), kept[h]] for h in rest), 0)
                gain = f2_gains(self.tables[g], n_true, rest_tp, sum((kept[h] for h in rest), 0))
                j, mn, mx = best_counts(self.tables[g].pos, gain, mins, maxs, self.rank)
                params[g] = {"threshold": float(self.grid[j]), "min_labels": mn, "max_labels": mx}
                kept[g] = self.tables[g].kept(**params[g])
        self._cache["groups"] = params
        return params

    def fit(self, rule: str) -> dict:
        """The fitted parameters of ``rule`` on these rows, with its name and the total label bounds."""
        bounds = {"min_labels_total": self.lo, "max_labels_total": self.hi}
        return {"rule": rule, **get_rule(rule).fit(self), **bounds}


def _top_prefix_f2(oof: _Oof, params: dict, rows: np.ndarray, threshold) -> np.ndarray:
    """F2 of a rule that keeps a prefix of each row's top probabilities, before and after the total bounds."""
    (lo, hi), whole = _total_bounds(params), oof.tables[ALL]
    kept = whole.kept(threshold, params["min_labels"], params["max_labels"], rows)
    kept = np.minimum(np.clip(kept, lo, hi), whole.vals.shape[1])
    return _f2(whole.cumtrue[rows, kept], whole.n_true[rows], kept)


# --- global: one threshold, one min/max label count ---


def _fit_global(f: _Fitter) -> dict:
    return dict(f.global_fit())


def _select_global(params: dict, probs: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    return binarize(probs, params["threshold"], min_labels=params["min_labels"], max_labels=params["max_labels"])


def _global_f2(oof: _Oof, params: dict, rows: np.ndarray) -> np.ndarray:
    return _top_prefix_f2(oof, params, rows, params["threshold"])


# --- relative: p > factor * max(p) per image ---


def _fit_relative(f: _Fitter) -> dict:
    t, factors = f.tables[ALL], np.asarray(RELATIVE_FACTORS, dtype=np.float64)
    pos = threshold_positions(t.vals, t.vals[:, :1].astype(np.float64) * factors[None, :])
    j, mn, mx = best_counts(pos, f.gains(), (f.lo,), _choices(f.lo, f.hi)[1], ascending_ranks(factors))
    return {"factor": float(factors[j]), "min_labels": mn, "max_labels": mx}


def _select_relative(params: dict, probs: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    t = probs.max(axis=1, keepdims=True).astype(np.float64) * params["factor"]
    return binarize(probs, t, min_labels=params["min_labels"], max_labels=params["max_labels"])


def _relative_f2(oof: _Oof, params: dict, rows: np.ndarray) -> np.ndarray:
    top = oof.tables[ALL].vals[rows, :1].astype(np.float64)
    return _top_prefix_f2(oof, params, rows, top * params["factor"])


# --- per_group: a threshold and min/max label count per label group ---


def _fit_per_group(f: _Fitter) -> dict:
    return {"groups": f.per_group_fit()}


def _select_groups(params: dict, probs: np.ndarray, groups: dict[str, np.ndarray], thresholds=None) -> np.ndarray:
    """Each group's labels by its own (threshold, min, max); ``thresholds``: per class, over the groups'."""
    sel = np.zeros(probs.shape, dtype=bool)
    for g, idx in groups.items():
        p, take = params["groups"][g], column_view(idx)
        sel[:, take] = binarize(
            probs[:, take],
            p["threshold"] if thresholds is None else thresholds[take],
            min_labels=p["min_labels"],
            max_labels=p["max_labels"],
        )
    return sel


def _per_group_f2(oof: _Oof, params: dict, rows: np.ndarray) -> np.ndarray | None:
    """From the groups' tables merged by probability, when the groups cover every class once."""
    if oof.merged is None:
        return None
    lo, hi = _total_bounds(params)
    group, rank, ys = (a[rows] for a in oof.merged)
    kept = np.stack([oof.tables[g].kept(rows=rows, **params["groups"][g]) for g in oof.groups], axis=1)
    sel = rank < np.take_along_axis(kept, group.astype(np.intp), axis=1)
    short = lo - np.count_nonzero(sel, axis=1)
    sel |= ~sel & (np.cumsum(~sel, axis=1) <= short[:, None])  # the most probable others
    sel &= np.cumsum(sel, axis=1) <= hi
    return _f2(np.count_nonzero(sel & ys, axis=1), oof.tables[ALL].n_true[rows], np.count_nonzero(sel, axis=1))


# --- per_class: per-class thresholds shrunk toward their group's ---


def _fit_per_class(f: _Fitter) -> dict:
    base = f.per_group_fit()
    h_all, h_pos = f.hist()
    own = column_thresholds(h_all, h_pos, f.grid)
    pos = h_pos.sum(axis=1).astype(float)
    group_t = np.full(len(own), f.global_fit()["threshold"])
    for g, idx in f.groups.items():
        group_t[idx] = base[g]["threshold"]
    weight = pos / (pos + SHRINK_POSITIVES)
    return {"groups": base, "thresholds": np.round(weight * own + (1 - weight) * group_t, 4).tolist()}


def _select_per_class(params: dict, probs: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    return _select_groups(params, probs, groups, np.asarray(params["thresholds"], dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class Rule:
    """A registered decision rule.

    Attributes:
        fit: ``_Fitter`` -> the rule's parameters (its name and the total bounds are added around them).
        apply: (params, a block of probabilities, groups) -> its boolean labels, before the total bounds.
        fast_f2: (``_Oof``, params, rows) -> each row's F2 from the count tables, or None where they can't
            tell; None: the rows are scored from the matrix.
    """

    fit: Callable[[_Fitter], dict]
    apply: Callable[[dict, np.ndarray, dict], np.ndarray]
    fast_f2: Callable[[_Oof, dict, np.ndarray], np.ndarray | None] | None = None


# The rules, in the order they compete (the first wins a tie). One entry per rule: nothing else lists them.
RULES: dict[str, Rule] = {
    "global": Rule(_fit_global, _select_global, _global_f2),
    "per_group": Rule(_fit_per_group, _select_groups, _per_group_f2),
    "per_class": Rule(_fit_per_class, _select_per_class),
    "relative": Rule(_fit_relative, _select_relative, _relative_f2),
}


def get_rule(name: str) -> Rule:
    """The registered rule ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in RULES:
        raise ValueError(f"unknown decision rule {name!r}; known: {list(RULES)}")
    return RULES[name]


def _select(params: dict, probs: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    """The boolean labels of a block of rows: the rule's, then the total bounds."""
    sel = get_rule(params["rule"]).apply(params, probs, groups)
    return bound_label_counts(sel, probs, *_total_bounds(params))


def apply_rule(params: dict, probs: np.ndarray, groups: dict[str, np.ndarray]) -> np.ndarray:
    """Applies fitted parameters (from ``choose_rule``, i.e. decision.json) to probabilities -> 0/1 uint8 matrix.

    Every row gets at least ``max(1, min_labels_total)`` and at most ``max_labels_total`` labels (1 and 10
    when the parameters predate these keys). Ties in probability go to the lower class id."""
    probs = np.asarray(probs)
    out = np.empty(probs.shape, dtype=np.uint8)
    for b in row_blocks(*probs.shape):
        out[b] = _select(params, probs[b], groups)
    return out


def _dense_f2(params: dict, y: np.ndarray, probs: np.ndarray, groups, rows: np.ndarray) -> np.ndarray:
    """F2 of each of ``rows`` under ``params`` (f2_per_sample of apply_rule's rows), a block at a time."""
    out = np.empty(len(rows))
    for b in row_blocks(len(rows), probs.shape[1]):
        sel, truth = _select(params, probs[rows[b]], groups), np.asarray(y[rows[b]]) > 0
        out[b] = _f2(
            np.count_nonzero(sel & truth, axis=1), np.count_nonzero(truth, axis=1), np.count_nonzero(sel, axis=1)
        )
    return out


def _crossfit_f2(oof: _Oof, rules: Sequence[str], row_f2: Callable) -> dict[str, np.ndarray]:
    """Each rule's F2 on every OOF row, fitted on the other folds' rows."""
    f2 = {r: np.empty(len(oof.fold_of)) for r in rules}
    for k in range(len(oof.fold_ids)):  # one fold's training tables at a time
        fitter, rows = oof.fitter(k), np.flatnonzero(oof.fold_of == k)
        for r in rules:
            f2[r][rows] = row_f2(fitter.fit(r), rows)
    return f2


def _choose(rules: Sequence[str], crossfit: dict, f2: dict | None, log: Callable[[str], None]) -> tuple[str, str]:
    """(chosen rule, why): the best cross-fitted F2 (the first listed on a tie), unless its per-image gain over
    ``FALLBACK`` is within noise (``f2``: per-row cross-fitted F2, None with one fold)."""
    best = max(rules, key=lambda r: (crossfit[r], -list(rules).index(r)))
    if best == FALLBACK or FALLBACK not in rules or f2 is None:
        return best, "the best cross-fitted F2"
    lo, hi = bootstrap_interval(f2[best] - f2[FALLBACK], resamples=GAIN_RESAMPLES)
    gain = f"{best}'s gain over {FALLBACK} {crossfit[best] - crossfit[FALLBACK]:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    chosen, why = (best, f"{gain}: clear") if lo > 0 else (FALLBACK, f"{gain}: within noise, {FALLBACK} kept")
    log(f"rule choice: {why}")
    return chosen, why


def choose_rule(
    y: np.ndarray,
    probs: np.ndarray,
    folds: np.ndarray,
    groups: dict[str, np.ndarray],
    *,
    grid: np.ndarray,
    rules: Sequence[str] = tuple(RULES),
    min_labels: int = BASELINE_MIN_LABELS,
    max_labels: int = BASELINE_MAX_LABELS,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Scores every rule by cross-fitting over folds, picks the best, keeps its fit on all OOF.

    Args:
        y: (n, classes) truth of the OOF images.
        probs: their OOF probabilities (float32 is fine: nothing copies the whole matrix).
        folds: fold of each OOF image.
        groups: group name -> class indices (from labels.csv).
        grid: thresholds to try.
        rules: which rules to compare.
        min_labels: every image gets at least this many labels under every rule (>= 1).
        max_labels: and at most this many.

    Returns:
        The content of decision.json: ``chosen``, ``params`` (with ``min_labels_total`` and
        ``max_labels_total``), ``oof_f2`` (cross-fitted F2 of every rule), ``oof_f2_in_sample`` (each rule
        fitted and scored on all OOF, for reference).

    Raises:
        ValueError: min_labels < 1, max_labels < min_labels, or an unknown rule.
    """
    _check_bounds(min_labels, max_labels)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown decision rule(s) {unknown}; known: {list(RULES)}")
    oof = _Oof(y, probs, folds, groups, grid, min_labels, max_labels)

    def row_f2(params, rows):
        f2 = oof.table_f2(params, rows)
        return _dense_f2(params, y, probs, groups, rows) if f2 is None else f2

    fitted = {r: oof.fitter().fit(r) for r in rules}
    in_sample = {r: float(row_f2(fitted[r], np.arange(len(y))).mean()) for r in rules}
    f2 = _crossfit_f2(oof, rules, row_f2) if len(oof.fold_ids) > 1 else None
    crossfit = dict(in_sample) if f2 is None else {r: float(f2[r].mean()) for r in rules}
    for r in rules:
        log(f"rule {r}: cross-fitted OOF F2 {crossfit[r]:.4f} (in-sample {in_sample[r]:.4f})")
    chosen, why = _choose(rules, crossfit, f2, log)
    return {
        "chosen": chosen,
        "params": fitted[chosen],
        "oof_f2": crossfit,
        "oof_f2_in_sample": in_sample,
        "chosen_because": why,
    }
