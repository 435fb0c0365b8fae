"""K-fold splits of a multi-label train set, and the balance measure they are judged by.

Methods:
- ``balanced`` (default): a label-by-label stratified start, then a local search that moves (or swaps)
  images between folds to cut each label's deviation from n/K, scoring each move over all the image's labels.
- ``greedy``: the baseline's split (Lopuhin's ``make_folds``), reproduced exactly, so published folds can be remade.
- ``iterstrat``: iterative-stratification's ``MultilabelStratifiedKFold``, if installed.

CLI: ``python -m kernel_build.folds TRAIN_CSV --out folds.csv [--n-folds K] [--method M] [--seed S] [--report]``
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from imet_utils.data import multi_hot

DEFAULT_METHOD = "balanced"
DEFAULT_SEED = 42
L1_WEIGHT = 0.1  # tie-breaker: the mean |c - n/K| also counts, so a move that trims one of two equal peaks pays
MAX_CANDIDATES = 256  # images tried per move; enough for common labels, where any of thousands will do
SIZE_TOLERANCE = Fraction(1, 200)  # fold sizes stay within 0.5% of n/K, or 1 image if that is more
MAX_ROUNDS = 10_000  # local search passes over all labels; the deadline normally ends it first
MOVES_PER_LABEL = 64  # moves for one label before the pass goes on to the next


def fold_size_bounds(n_images: int, n_folds: int) -> tuple[int, int]:
    """Sizes s allowed: |s - n/K| <= max(1, 0.5% of n/K), s >= 1; they hold floor(n/K) and ceil(n/K)."""
    ideal = Fraction(n_images, n_folds)
    slack = max(Fraction(1), ideal * SIZE_TOLERANCE)
    return max(1, math.ceil(ideal - slack)), math.floor(ideal + slack)


def _label_lists_csr(label_lists: Sequence[Sequence[int]]) -> tuple:
    lens = np.fromiter((len(x) for x in label_lists), dtype=np.int64, count=len(label_lists))
    indptr = np.concatenate([[0], np.cumsum(lens)])
    indices = np.fromiter((c for x in label_lists for c in x), dtype=np.int64, count=int(indptr[-1]))
    return indptr, indices


def _flat_labels(indptr: np.ndarray, imgs: np.ndarray) -> tuple:
    """Positions in ``indices`` of the labels of ``imgs``, and each image's number of labels."""
    lo, lens = indptr[imgs], indptr[imgs + 1] - indptr[imgs]
    return np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum()), lens


def fold_counts(label_lists: Sequence[Sequence[int]], folds: np.ndarray, n_classes: int, n_folds: int) -> np.ndarray:
    """(n_folds, n_classes) count of each label in each fold."""
    indptr, indices = _label_lists_csr(label_lists)
    owner_fold = np.repeat(np.asarray(folds), np.diff(indptr))
    counts = np.zeros((n_folds, n_classes), dtype=np.int64)
    np.add.at(counts, (owner_fold, indices), 1)
    return counts


def label_deviation(counts: np.ndarray) -> np.ndarray:
    """dev_l = max_k |c_kl - n_l/K| / (n_l/K) for every label with images (NaN for labels without)."""
    target = counts.sum(axis=0) / counts.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(counts - target).max(axis=0) / target


def rounding_floor(counts: np.ndarray) -> float:
    """The mean dev of a perfect integer split: no split of these labels can beat it."""
    n = counts.sum(axis=0)
    t = n[n > 0] / counts.shape[0]
    floor_dev = np.where(np.isclose(t, np.round(t)), 0.0, np.maximum(np.ceil(t) - t, t - np.floor(t)) / t)
    return float(floor_dev.mean())


# ---------------------------------------------------------------- seed greedy
def read_attribute_tokens(train_csv: Path) -> list[list[str]]:
    """Each row's attribute_ids tokens as written in train.csv (order and duplicates kept): greedy's exact input."""
    raw = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    return [s.split() for s in raw["attribute_ids"]]


def greedy_folds(
    label_lists: Sequence[Sequence[Hashable]], n_classes: int, n_folds: int = 5, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """The baseline's split (Lopuhin's ``make_folds``, kaggle-imet-2019), assignment for assignment.

    Rows go in ``DataFrame.sample(frac=1, random_state=seed)`` order (the baseline fixed 42). Each joins the fold
    with the fewest so far of its rarest label (the first of equally rare ones in the row's order), ties
    going to ``random.seed(row); random.choice(tied folds)``; then all its labels count in that fold.

    Args:
        label_lists: each row's labels as train.csv writes them, duplicates kept (``read_attribute_tokens``).
            The seed keys labels by string token; ints give the same split unless the CSV writes an id two
            ways ("07", "7"). ``read_train`` sorts each row, which can change the rarest of equally rare
            labels (4,460 real rows are out of order, yet the real split comes out the same).
        n_classes: unused; every method has this signature.
        n_folds, seed: K, and ``random_state`` of the shuffle.

    Returns:
        Fold of each row.
    """
    totals = Counter(t for row in label_lists for t in row)
    per_label = {t: [0] * n_folds for t in totals}
    order = pd.DataFrame(index=pd.RangeIndex(len(label_lists))).sample(frac=1, random_state=seed).index
    folds = np.empty(len(label_lists), dtype=np.int64)
    tie = random.Random()  # its own generator: the baseline's random.seed/choice, without touching global state
    for i in order.tolist():
        row = label_lists[i]
        counts = per_label[min(row, key=totals.__getitem__)]  # an empty row fails here, as in the baseline
        low = min(counts)
        choices = [k for k in range(n_folds) if counts[k] == low]
        if len(choices) > 1:
            tie.seed(i)
        k = tie.choice(choices)  # one choice: that one, whatever the generator's state
        folds[i] = k
        for c in row:
            per_label[c][k] += 1
    return folds


# ---------------------------------------------------------------- balanced
def _stratified_start(
    indptr: np.ndarray, indices: np.ndarray, n_classes: int, n_folds: int, rng: np.random.Generator
) -> np.ndarray:
    """Rarest label first: each label's still-free images fill the folds' deficits of that label."""
    n = len(indptr) - 1
    owner = np.repeat(np.arange(n), np.diff(indptr))
    totals = np.bincount(indices, minlength=n_classes)
    perm = rng.permutation(len(indices))  # images of each label, in a seeded random order
    label_images = owner[perm][np.argsort(indices[perm], kind="stable")]
    label_ptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=n_classes))])
    folds = np.full(n, -1, dtype=np.int64)
    counts = np.zeros((n_folds, n_classes), dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    for label in np.argsort(totals, kind="stable"):
        imgs = label_images[label_ptr[label] : label_ptr[label + 1]]
        free = imgs[folds[imgs] < 0]
        if free.size == 0:
            continue
        need = totals[label] / n_folds - counts[:, label]
        # Hand out the free images one by one to the fold with the largest deficit,
        # breaking ties by the smaller fold; done in closed form by sorting slots.
        m = free.size
        slots = np.concatenate(
            [np.stack([need[k] - np.arange(m), np.full(m, -sizes[k]), np.full(m, k)], axis=1) for k in range(n_folds)]
        )
        pick = np.lexsort((rng.random(len(slots)), slots[:, 1], slots[:, 0]))[::-1][: free.size]
        assigned = slots[pick, 2].astype(np.int64)
        folds[free] = assigned
        flat, lens = _flat_labels(indptr, free)
        np.add.at(counts, (np.repeat(assigned, lens), indices[flat]), 1)
        sizes += np.bincount(assigned, minlength=n_folds)
    folds[folds < 0] = int(np.argmin(sizes))  # images without labels; balance_sizes spreads them if need be
    return folds


class _LocalSearch:
    """Moves one image at a time from a label's fullest fold to its emptiest, if the whole objective drops."""

    def __init__(self, indptr, indices, folds, n_classes, n_folds, rng):
        self.indptr, self.indices, self.folds, self.rng = indptr, indices, folds, rng
        n = len(indptr) - 1
        owner = np.repeat(np.arange(n), np.diff(indptr))
        self.counts = np.zeros((n_folds, n_classes), dtype=np.float64)
        np.add.at(self.counts, (folds[owner], indices), 1)
        totals = np.bincount(indices, minlength=n_classes).astype(np.float64)
        self.target = totals / n_folds
        self.inv_t = np.divide(1.0, self.target, out=np.zeros_like(self.target), where=totals > 0)
        self.label_images = owner[np.argsort(indices, kind="stable")]
        self.label_ptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=n_classes))])
        self.sizes = np.bincount(folds, minlength=n_folds)
        self.size_lo, self.size_hi = fold_size_bounds(n, n_folds)

    def _objective(self, c: np.ndarray, t: np.ndarray, it: np.ndarray) -> np.ndarray:
        d = np.abs(c - t) * it
        return d.max(axis=0) + L1_WEIGHT * d.mean(axis=0)

    def gains(self, imgs: np.ndarray, a: int, b: int) -> np.ndarray:
        """Objective drop of moving each of ``imgs`` from fold a to fold b."""
        flat, lens = _flat_labels(self.indptr, imgs)
        labs, owner = self.indices[flat], np.repeat(np.arange(len(imgs)), lens)
        c = self.counts[:, labs]
        t, it = self.target[labs], self.inv_t[labs]
        old = self._objective(c, t, it)
        c[a] -= 1
        c[b] += 1
        return np.bincount(owner, weights=old - self._objective(c, t, it), minlength=len(imgs))

    def move(self, img: int, a: int, b: int) -> None:
        labs = self.indices[self.indptr[img] : self.indptr[img + 1]]
        self.counts[a, labs] -= 1
        self.counts[b, labs] += 1
        self.folds[img] = b
        self.sizes[a] -= 1
        self.sizes[b] += 1

    def _swap(self, img: int, gain: float, a: int, b: int) -> bool:
        """Moves ``img`` from a to b and the best of a sample of b's images back, if the pair helps (sizes kept)."""
        self.move(img, a, b)
        back = np.flatnonzero(self.folds == b)
        back = self.rng.choice(back, min(back.size, 4 * MAX_CANDIDATES), replace=False)
        g = self.gains(back, b, a)
        best = int(np.argmax(g))
        if gain + g[best] > 1e-12:
            self.move(int(back[best]), b, a)
            return True
        self.move(img, b, a)
        return False

    def fix_label(self, label: int) -> bool:
        c = self.counts[:, label]
        if c.max() - c.min() <= 1:
            return False  # already a perfect integer split
        a = int(np.argmax(c))  # only the fullest fold's excess is tried; others come on later calls
        imgs = self.label_images[self.label_ptr[label] : self.label_ptr[label + 1]]
        imgs = imgs[self.folds[imgs] == a]
        if imgs.size > MAX_CANDIDATES:
            imgs = self.rng.choice(imgs, MAX_CANDIDATES, replace=False)
        for b in np.argsort(c, kind="stable").tolist():
            if c[a] - c[b] <= 1:
                break
            g = self.gains(imgs, a, b)
            best = int(np.argmax(g))
            if self.sizes[a] <= self.size_lo or self.sizes[b] >= self.size_hi:  # a move would break the bounds
                if self._swap(int(imgs[best]), g[best], a, b):
                    return True
            elif g[best] > 1e-12:
                self.move(int(imgs[best]), a, b)
                return True
        return False

    def balance_sizes(self) -> None:
        """Moves the cheapest images from the largest fold to the smallest until sizes fit the bounds.

        While one is out, largest - smallest >= 2 (the bounds hold floor and ceil of n/K), so <= n moves."""
        for _ in range(len(self.folds) + 1):
            a, b = int(np.argmax(self.sizes)), int(np.argmin(self.sizes))
            if self.sizes[a] <= self.size_hi and self.sizes[b] >= self.size_lo:
                return
            imgs = np.flatnonzero(self.folds == a)
            imgs = self.rng.choice(imgs, min(imgs.size, 4 * MAX_CANDIDATES), replace=False)
            self.move(int(imgs[np.argmax(self.gains(imgs, a, b))]), a, b)
        raise RuntimeError(f"fold sizes {self.sizes.tolist()} outside [{self.size_lo}, {self.size_hi}]")

    def run(self, deadline: float) -> None:
        self.balance_sizes()
        labels = np.flatnonzero(self.target > 0)
        for _ in range(MAX_ROUNDS):  # every move lowers the objective, so no state repeats; the deadline ends it
            dev = np.abs(self.counts[:, labels] - self.target[labels]).max(axis=0) * self.inv_t[labels]
            improved = 0
            for label in labels[np.argsort(-dev, kind="stable")]:
                if time.perf_counter() >= deadline:
                    break
                for _ in range(MOVES_PER_LABEL):
                    if not self.fix_label(int(label)):
                        break
                    improved += 1
            if not improved:
                break


def balanced_folds(
    label_lists: Sequence[Sequence[int]],
    n_classes: int,
    n_folds: int = 5,
    seed: int = DEFAULT_SEED,
    time_limit: float = 3.0,
) -> np.ndarray:
    """The default split: stratified start, then exact-gain local search until no move helps or time runs out.

    Fold sizes end within ``fold_size_bounds``; every loop is capped, so it returns soon after ``time_limit``.

    Args:
        label_lists: labels of each image.
        n_classes: number of labels.
        n_folds: K.
        seed: makes the split deterministic (for a given ``time_limit`` that isn't hit).
        time_limit: seconds for the local search.

    Returns:
        Fold of each image.
    """
    if len(label_lists) < n_folds:
        raise ValueError(f"{len(label_lists)} images can't make {n_folds} folds")
    rng = np.random.default_rng(seed)
    indptr, indices = _label_lists_csr(label_lists)
    folds = _stratified_start(indptr, indices, n_classes, n_folds, rng)
    search = _LocalSearch(indptr, indices, folds, n_classes, n_folds, rng)
    search.run(time.perf_counter() + time_limit)
    return search.folds


def iterstrat_folds(
    label_lists: Sequence[Sequence[int]], n_classes: int, n_folds: int = 5, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """iterative-stratification's ``MultilabelStratifiedKFold`` (slow on the full set)."""
    try:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    except ImportError:
        raise ImportError("method 'iterstrat' needs: pip install iterative-stratification") from None
    y = multi_hot(list(label_lists), n_classes)
    folds = np.empty(len(label_lists), dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(y)), y)):
        folds[valid] = k
    return folds


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "balanced": balanced_folds,
    "greedy": greedy_folds,
    "iterstrat": iterstrat_folds,
}


def make_folds(
    label_lists: Sequence[Sequence[int]],
    n_classes: int,
    *,
    n_folds: int = 5,
    method: str = DEFAULT_METHOD,
    seed: int = DEFAULT_SEED,
    tokens: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """Splits images into ``n_folds`` folds with the named method; returns each image's fold.

    ``tokens`` (``read_attribute_tokens``), if given, replace ``label_lists`` for ``greedy``: the baseline's
    exact input.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fold method {method!r}; known: {sorted(METHODS)}")
    if len(label_lists) < n_folds:
        raise ValueError(f"{len(label_lists)} images can't make {n_folds} folds")
    if method == "greedy" and tokens is not None:
        if len(tokens) != len(label_lists):
            raise ValueError(f"{len(tokens)} token rows for {len(label_lists)} images")
        label_lists = tokens
    return METHODS[method](label_lists, n_classes, n_folds=n_folds, seed=seed)


@dataclasses.dataclass
class FoldReport:
    mean_dev: float  # mean over labels of max_k |c_kl - n_l/K| / (n_l/K)
    mean_excess: float  # the same with max_k (c_kl - n_l/K): only over-full folds count
    excess_floor: float
    max_dev: float
    floor: float
    sizes: list[int]
    missing: int  # labels with >= K images absent from some fold
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"mean dev {self.mean_dev:.4f} (rounding floor {self.floor:.4f}), max dev {self.max_dev:.3f}",
            f"mean excess dev {self.mean_excess:.4f} (rounding floor {self.excess_floor:.4f})",
            f"fold sizes {self.sizes}",
            f"labels with >= K images missing from some fold: {self.missing}",
            f"time {self.seconds:.2f} s",
        ]


def fold_report(label_lists, folds, n_classes, n_folds, seconds) -> FoldReport:
    counts = fold_counts(label_lists, folds, n_classes, n_folds)
    dev = label_deviation(counts)
    totals = counts.sum(axis=0)
    target = totals / n_folds
    has = totals > 0
    excess = (counts[:, has] - target[has]).max(axis=0) / target[has]
    excess_floor = (np.ceil(target[has]) - target[has]) / target[has]
    return FoldReport(
        mean_dev=float(np.nanmean(dev)),
        max_dev=float(np.nanmax(dev)),
        floor=rounding_floor(counts),
        mean_excess=float(excess.mean()),
        excess_floor=float(excess_floor.mean()),
        sizes=np.bincount(folds, minlength=n_folds).tolist(),
        missing=int(((counts == 0) & (totals >= n_folds)).any(axis=0).sum()),
        seconds=seconds,
    )


if __name__ == "__main__":  # stripped from the kernels; the command line is build-time code now
    raise SystemExit(
        "imet_utils.folds has no command line any more: python -m kernel_build.folds TRAIN_CSV --out FOLDS_CSV"
    )
