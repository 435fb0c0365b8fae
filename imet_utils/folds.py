"""K-fold splits of a multi-label train set, and the balance measure they are judged by.

Methods:
- ``balanced`` (default): a label-by-label stratified start, then a local search
  that moves single images between folds to cut each label's deviation from n/K,
  scoring every candidate move exactly over all of the image's labels.
- ``greedy``: the seed notebook's "rarest label first", kept so that published
  folds can be reproduced.
- ``iterstrat``: iterative-stratification's ``MultilabelStratifiedKFold``, if installed.

CLI: ``python -m imet_utils.folds TRAIN_CSV --out folds.csv [--n-folds K] [--method M] [--seed S] [--report]``
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from imet_utils.data import multi_hot, read_labels, read_train

DEFAULT_METHOD = "balanced"
DEFAULT_SEED = 42
L1_WEIGHT = 0.1  # tie-breaker: the mean |c - n/K| also counts, so a move that trims one of two equal peaks pays
MAX_CANDIDATES = 256  # images tried per move; enough for common labels, where any of thousands will do
SIZE_TOLERANCE = 0.005  # fold sizes stay within 0.5% of n/K


def _label_lists_csr(label_lists: Sequence[Sequence[int]]) -> tuple:
    lens = np.fromiter((len(x) for x in label_lists), dtype=np.int64, count=len(label_lists))
    indptr = np.concatenate([[0], np.cumsum(lens)])
    indices = np.fromiter((c for x in label_lists for c in x), dtype=np.int64, count=int(indptr[-1]))
    return indptr, indices


def fold_counts(label_lists: Sequence[Sequence[int]], folds: np.ndarray, n_classes: int, n_folds: int) -> np.ndarray:
    """(n_folds, n_classes) count of each label in each fold."""
    indptr, indices = _label_lists_csr(label_lists)
    owner_fold = np.repeat(np.asarray(folds), np.diff(indptr))
    counts = np.zeros((n_folds, n_classes), dtype=np.int64)
    np.add.at(counts, (owner_fold, indices), 1)
    return counts


def label_deviation(counts: np.ndarray) -> np.ndarray:
    """dev_l = max_k |c_kl - n_l/K| / (n_l/K) for every label with images (NaN for labels without)."""
    n = counts.sum(axis=0).astype(np.float64)
    target = n / counts.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(counts - target).max(axis=0) / target


def rounding_floor(counts: np.ndarray) -> float:
    """The mean dev of a perfect integer split: no split of these labels can beat it."""
    n = counts.sum(axis=0).astype(np.float64)
    n = n[n > 0]
    t = n / counts.shape[0]
    floor_dev = np.where(np.isclose(t, np.round(t)), 0.0, np.maximum(np.ceil(t) - t, t - np.floor(t)) / t)
    return float(floor_dev.mean())


# ---------------------------------------------------------------- seed greedy
def greedy_folds(label_lists: Sequence[Sequence[int]], n_classes: int, n_folds: int = 5,
                 seed: int = DEFAULT_SEED) -> np.ndarray:
    """The seed notebook's split: shuffle, then each image joins the fold with the fewest of its rarest label.

    Ties are broken by a seeded random choice.
    """
    rng = random.Random(seed)
    order = list(range(len(label_lists)))
    rng.shuffle(order)
    totals = np.zeros(n_classes, dtype=np.int64)
    for x in label_lists:
        totals[list(x)] += 1
    totals = totals.tolist()
    per_label: List[List[int]] = [[0] * n_folds for _ in range(n_classes)]
    folds = np.empty(len(label_lists), dtype=np.int64)
    for i in order:
        rarest = min(label_lists[i], key=lambda c: totals[c])
        row = per_label[rarest]
        low = min(row)
        choices = [k for k in range(n_folds) if row[k] == low]
        k = choices[0] if len(choices) == 1 else rng.choice(choices)
        row[k] += 1
        folds[i] = k
    return folds


# ---------------------------------------------------------------- balanced
def _stratified_start(indptr: np.ndarray, indices: np.ndarray, n_classes: int, n_folds: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Rarest label first: each label's still-free images fill the folds' deficits of that label."""
    n = len(indptr) - 1
    owner = np.repeat(np.arange(n), np.diff(indptr))
    totals = np.bincount(indices, minlength=n_classes)
    # Images of each label, in a seeded random order.
    perm = rng.permutation(len(indices))
    by_label = np.argsort(indices[perm], kind="stable")
    label_images = owner[perm][by_label]
    label_ptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=n_classes))])
    folds = np.full(n, -1, dtype=np.int64)
    counts = np.zeros((n_folds, n_classes), dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    for label in np.argsort(totals, kind="stable"):
        if totals[label] == 0:
            continue
        imgs = label_images[label_ptr[label]:label_ptr[label + 1]]
        free = imgs[folds[imgs] < 0]
        if free.size == 0:
            continue
        need = totals[label] / n_folds - counts[:, label]
        # Hand out the free images one by one to the fold with the largest deficit,
        # breaking ties by the smaller fold; done in closed form by sorting slots.
        slots = []
        for k in range(n_folds):
            m = free.size
            slots.append(np.stack([need[k] - np.arange(m), np.full(m, -sizes[k]), np.full(m, k)], axis=1))
        slots = np.concatenate(slots)
        pick = np.lexsort((rng.random(len(slots)), slots[:, 1], slots[:, 0]))[::-1][:free.size]
        assigned = slots[pick, 2].astype(np.int64)
        folds[free] = assigned
        lo, hi = indptr[free], indptr[free + 1]
        lens = hi - lo
        flat = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        np.add.at(counts, (np.repeat(assigned, lens), indices[flat]), 1)
        sizes += np.bincount(assigned, minlength=n_folds)
    return folds


class _LocalSearch:
    """Moves one image at a time from a label's fullest fold to its emptiest, if the whole objective drops."""

    def __init__(self, indptr, indices, folds, n_classes, n_folds, rng):
        self.indptr, self.indices, self.folds, self.rng = indptr, indices, folds, rng
        self.K = n_folds
        n = len(indptr) - 1
        owner = np.repeat(np.arange(n), np.diff(indptr))
        self.counts = np.zeros((n_folds, n_classes), dtype=np.float64)
        np.add.at(self.counts, (folds[owner], indices), 1)
        totals = np.bincount(indices, minlength=n_classes).astype(np.float64)
        self.target = totals / n_folds
        self.inv_t = np.divide(1.0, self.target, out=np.zeros_like(self.target), where=totals > 0)
        order = np.argsort(indices, kind="stable")
        self.label_images = owner[order]
        self.label_ptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=n_classes))])
        self.sizes = np.bincount(folds, minlength=n_folds)
        ideal = n / n_folds
        self.size_lo = int(np.ceil(ideal * (1 - SIZE_TOLERANCE)))
        self.size_hi = int(np.floor(ideal * (1 + SIZE_TOLERANCE)))

    def _labels_of(self, imgs: np.ndarray):
        lo, hi = self.indptr[imgs], self.indptr[imgs + 1]
        lens = hi - lo
        flat = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        return self.indices[flat], np.repeat(np.arange(len(imgs)), lens), lens

    def _objective(self, c: np.ndarray, t: np.ndarray, it: np.ndarray) -> np.ndarray:
        d = np.abs(c - t) * it
        return d.max(axis=0) + L1_WEIGHT * d.mean(axis=0)

    def gains(self, imgs: np.ndarray, a: int, b: int) -> np.ndarray:
        """Objective drop of moving each of ``imgs`` from fold a to fold b."""
        labs, owner, _ = self._labels_of(imgs)
        c = self.counts[:, labs]
        t, it = self.target[labs], self.inv_t[labs]
        old = self._objective(c, t, it)
        c[a] -= 1
        c[b] += 1
        return np.bincount(owner, weights=old - self._objective(c, t, it), minlength=len(imgs))

    def move(self, img: int, a: int, b: int) -> None:
        labs = self.indices[self.indptr[img]:self.indptr[img + 1]]
        self.counts[a, labs] -= 1
        self.counts[b, labs] += 1
        self.folds[img] = b
        self.sizes[a] -= 1
        self.sizes[b] += 1

    def fix_label(self, label: int) -> bool:
        c = self.counts[:, label]
        if c.max() - c.min() <= 1:
            return False  # already a perfect integer split
        for a in np.argsort(-c, kind="stable"):
            for b in np.argsort(c, kind="stable"):
                if c[a] - c[b] <= 1:
                    break
                if self.sizes[a] <= self.size_lo or self.sizes[b] >= self.size_hi:
                    continue
                imgs = self.label_images[self.label_ptr[label]:self.label_ptr[label + 1]]
                imgs = imgs[self.folds[imgs] == a]
                if imgs.size > MAX_CANDIDATES:
                    imgs = self.rng.choice(imgs, MAX_CANDIDATES, replace=False)
                g = self.gains(imgs, int(a), int(b))
                best = int(np.argmax(g))
                if g[best] > 1e-12:
                    self.move(int(imgs[best]), int(a), int(b))
                    return True
            break  # only the fullest fold's excess is tried; others come on later calls
        return False

    def balance_sizes(self) -> None:
        """Moves the cheapest images from oversized to undersized folds (rarely needed)."""
        while self.sizes.max() > self.size_hi or self.sizes.min() < self.size_lo:
            a, b = int(np.argmax(self.sizes)), int(np.argmin(self.sizes))
            imgs = np.flatnonzero(self.folds == a)
            imgs = self.rng.choice(imgs, min(imgs.size, 4 * MAX_CANDIDATES), replace=False)
            self.move(int(imgs[np.argmax(self.gains(imgs, a, b))]), a, b)

    def run(self, deadline: float) -> None:
        self.balance_sizes()
        labels = np.flatnonzero(self.target > 0)
        while time.perf_counter() < deadline:
            dev = np.abs(self.counts[:, labels] - self.target[labels]).max(axis=0) * self.inv_t[labels]
            improved = 0
            for label in labels[np.argsort(-dev, kind="stable")]:
                if time.perf_counter() >= deadline:
                    break
                for _ in range(64):
                    if not self.fix_label(int(label)):
                        break
                    improved += 1
            if not improved:
                break


def balanced_folds(label_lists: Sequence[Sequence[int]], n_classes: int, n_folds: int = 5,
                   seed: int = DEFAULT_SEED, time_limit: float = 3.0) -> np.ndarray:
    """The default split: stratified start, then exact-gain local search until no move helps or time runs out.

    Args:
        label_lists: labels of each image.
        n_classes: number of labels.
        n_folds: K.
        seed: makes the split deterministic (for a given ``time_limit`` that isn't hit).
        time_limit: seconds for the local search.

    Returns:
        Fold of each image.
    """
    rng = np.random.default_rng(seed)
    indptr, indices = _label_lists_csr(label_lists)
    folds = _stratified_start(indptr, indices, n_classes, n_folds, rng)
    search = _LocalSearch(indptr, indices, folds, n_classes, n_folds, rng)
    search.run(time.perf_counter() + time_limit)
    return search.folds


def iterstrat_folds(label_lists: Sequence[Sequence[int]], n_classes: int, n_folds: int = 5,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
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


METHODS: Dict[str, Callable[..., np.ndarray]] = {
    "balanced": balanced_folds,
    "greedy": greedy_folds,
    "iterstrat": iterstrat_folds,
}


def make_folds(label_lists: Sequence[Sequence[int]], n_classes: int, *, n_folds: int = 5,
               method: str = DEFAULT_METHOD, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Splits images into ``n_folds`` folds with the named method; returns each image's fold."""
    if method not in METHODS:
        raise ValueError(f"unknown fold method {method!r}; known: {sorted(METHODS)}")
    if len(label_lists) < n_folds:
        raise ValueError(f"{len(label_lists)} images can't make {n_folds} folds")
    return METHODS[method](label_lists, n_classes, n_folds=n_folds, seed=seed)


@dataclasses.dataclass
class FoldReport:
    mean_dev: float  # mean over labels of max_k |c_kl - n_l/K| / (n_l/K)
    mean_excess: float  # the same with max_k (c_kl - n_l/K): only over-full folds count
    excess_floor: float
    max_dev: float
    floor: float
    sizes: List[int]
    missing: int  # labels with >= K images absent from some fold
    seconds: float

    def lines(self) -> List[str]:
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
        mean_dev=float(np.nanmean(dev)), max_dev=float(np.nanmax(dev)), floor=rounding_floor(counts),
        mean_excess=float(excess.mean()), excess_floor=float(excess_floor.mean()),
        sizes=np.bincount(folds, minlength=n_folds).tolist(),
        missing=int(((counts == 0) & (totals >= n_folds)).any(axis=0).sum()), seconds=seconds,
    )


def _labels_csv_beside(train_csv: Path) -> Optional[Path]:
    cand = Path(train_csv).with_name("labels.csv")
    return cand if cand.is_file() else None


def folds_cli(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m imet_utils.folds", description="Split an iMet train.csv into K folds.")
    p.add_argument("train_csv", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--labels", type=Path, help="labels.csv (default: beside TRAIN_CSV)")
    p.add_argument("--report", action="store_true", help="print balance figures and save a PNG of label counts")
    args = p.parse_args(argv)

    start = time.perf_counter()
    labels_csv = args.labels or _labels_csv_beside(args.train_csv)
    if labels_csv:
        n_classes = read_labels(labels_csv).n_classes
    else:  # no labels.csv: the largest id seen decides
        raw = pd.read_csv(args.train_csv, dtype=str, keep_default_na=False)
        n_classes = max(int(t) for s in raw["attribute_ids"] for t in s.split() if t.isdigit()) + 1
    train = read_train(args.train_csv, n_classes)
    label_lists = list(train["labels"])
    folds = make_folds(label_lists, n_classes, n_folds=args.n_folds, method=args.method, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": train["id"], "fold": folds}).to_csv(args.out, index=False)
    seconds = time.perf_counter() - start
    print(f"wrote {args.out}: {len(folds)} images in {args.n_folds} folds ({args.method}, {seconds:.2f} s)")
    if args.report:
        report = fold_report(label_lists, folds, n_classes, args.n_folds, seconds)
        print("\n".join(report.lines()))
        from imet_utils.plots import plot_fold_label_counts

        png = args.out.with_suffix(".png")
        plot_fold_label_counts(fold_counts(label_lists, folds, n_classes, args.n_folds), png)
        print(f"saved {png}")
    return 0


if __name__ == "__main__":
    sys.exit(folds_cli())
