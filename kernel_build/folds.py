"""The folds command line: ``python -m kernel_build.folds TRAIN_CSV --out folds.csv [--n-folds K] [--method M]
[--seed S] [--labels LABELS_CSV] [--report]``, over ``imet_utils.folds`` (the split the train kernel makes)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from imet_utils.data import read_labels, read_train
from imet_utils.folds import (
    DEFAULT_METHOD,
    DEFAULT_SEED,
    METHODS,
    fold_counts,
    fold_report,
    make_folds,
    read_attribute_tokens,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kernel_build.folds", description="Split an iMet train.csv into K folds."
    )
    p.add_argument("train_csv", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--labels", type=Path, help="labels.csv (default: beside TRAIN_CSV)")
    p.add_argument("--report", action="store_true", help="print balance figures and save a PNG of label counts")
    args = p.parse_args(argv)
    start = time.perf_counter()
    beside = args.train_csv.with_name("labels.csv")
    labels_csv = args.labels or (beside if beside.is_file() else None)
    tokens = read_attribute_tokens(args.train_csv) if args.method == "greedy" or not labels_csv else None
    n_classes = (
        read_labels(labels_csv).n_classes
        if labels_csv  # else the largest id seen decides
        else max((int(t) for row in tokens for t in row if t.isdigit()), default=-1) + 1
    )
    train = read_train(args.train_csv, n_classes)
    label_lists = list(train["labels"])
    folds = make_folds(label_lists, n_classes, n_folds=args.n_folds, method=args.method, seed=args.seed, tokens=tokens)
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
    sys.exit(main())
