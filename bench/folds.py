"""Benchmark every fold method on a train.csv: wall time (reading the CSV included) and balance.

    python bench/folds.py [TRAIN_CSV] [--n-folds 5] [--skip iterstrat]

Default TRAIN_CSV: ../shared/data/imet2019/train.csv (the real competition file), else a generated one.
Each method runs in a fresh process, timed from start to folds.csv written, as a user would run it.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imet_utils.data import read_labels, read_train  # noqa: E402
from imet_utils.folds import METHODS, fold_report  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("train_csv", nargs="?", type=Path, default=ROOT.parent / "shared/data/imet2019/train.csv")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--skip", action="append", default=[])
    args = p.parse_args()
    if not args.train_csv.is_file():
        from synth import generate_competition

        d = Path(tempfile.mkdtemp())
        generate_competition(d, n_train=5000, n_test=1, max_side=80)
        args.train_csv = d / "train.csv"
    n_classes = read_labels(args.train_csv.with_name("labels.csv")).n_classes
    lists = list(read_train(args.train_csv, n_classes)["labels"])
    print(
        f"{args.train_csv}: {len(lists)} images, {n_classes} labels, K={args.n_folds}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with it)"
    )
    print("| method | mean dev | max dev | mean excess dev | labels missing from a fold | fold sizes | wall time |")
    print("|---|---|---|---|---|---|---|")
    import pandas as pd

    floor = None
    for method in METHODS:
        if method in args.skip:
            continue
        out = Path(tempfile.mkdtemp()) / "folds.csv"
        start = time.perf_counter()
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "kernel_build.folds",
                str(args.train_csv),
                "--out",
                str(out),
                "--n-folds",
                str(args.n_folds),
                "--method",
                method,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if res.returncode:
            print(f"| {method} | failed: {res.stderr.strip().splitlines()[-1]} |")
            continue
        folds = pd.read_csv(out)["fold"].to_numpy()
        r = fold_report(lists, folds, n_classes, args.n_folds, wall)
        floor = r
        print(
            f"| {method} | {r.mean_dev:.4f} | {r.max_dev:.2f} | {r.mean_excess:.4f} | {r.missing} | "
            f"{min(r.sizes)}–{max(r.sizes)} | {wall:.1f} s |"
        )
    if floor:
        print(f"| rounding floor | {floor.floor:.4f} | | {floor.excess_floor:.4f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
