"""Benchmark the submit kernel's decision step on the real label matrix with synthetic OOF probabilities.

    python bench/decision.py [DATA_DIR] [--rows N] [--rules global per_group ...] [--seed 0]

DATA_DIR holds labels.csv and train.csv (default: ../shared/data/imet2019, the real competition files).
y comes from the real train.csv; the probabilities are a seeded noisy function of y (sigmoid of normal logits:
positives well above negatives, negatives mostly tiny, about 16 per image above 0.05; tags harder than
cultures; cross-fitted F2 about 0.55-0.65); folds 0..4 at random. Times ``choose_rule`` with the default grid,
all rules and the default label bounds, then the rest of the submit kernel's decision step, plots aside (apply
the chosen rule to all OOF, F2 by group, the threshold curve's search, decision.json). Last line:
``decision: seconds=... peak_rss_mb=...`` (seconds of the whole decision step; peak RSS of the process).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imet_utils.config import DEFAULT_THRESHOLD_GRID  # noqa: E402
from imet_utils.data import multi_hot, read_labels, read_train  # noqa: E402
from imet_utils.decision import RULES, apply_rule, choose_rule  # noqa: E402
from imet_utils.metrics import (  # noqa: E402
    BASELINE_MAX_LABELS,
    BASELINE_MIN_LABELS,
    f2_by_group,
    search_threshold,
    threshold_grid,
)

N_FOLDS = 5
LOGIT_SD = 1.2
CHUNK = 2048  # rows generated at a time, so that generating adds little to the peak


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic_probs(y: np.ndarray, tag: np.ndarray, seed: int) -> np.ndarray:
    """float32 probabilities: sigmoid of normal logits, positives' far above negatives'; each class has its own
    difficulty, tags are harder than cultures."""
    rng = np.random.default_rng(seed)
    n, c = y.shape
    hard = (rng.uniform(0.0, 1.0, c) + 0.5 * tag).astype(np.float32)
    neg_mean, pos_mean = -6.5 + 1.0 * hard, -0.5 - 1.5 * hard
    probs = np.empty((n, c), np.float32)
    for s in range(0, n, CHUNK):
        yc = y[s : s + CHUNK] > 0
        logit = rng.standard_normal(yc.shape, dtype=np.float32) * np.float32(LOGIT_SD)
        logit += np.where(yc, pos_mean, neg_mean).astype(np.float32)
        probs[s : s + CHUNK] = 1 / (1 + np.exp(-logit))
    return probs


def arguments(description: str) -> argparse.ArgumentParser:
    """The benches' common options: the competition folder, a row limit and a seed."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("data", nargs="?", type=Path, default=ROOT.parent / "shared/data/imet2019")
    p.add_argument("--rows", type=int, default=None, help="use the first N images only (a quick run)")
    p.add_argument("--seed", type=int, default=0)
    return p


def bench_inputs(data: Path, rows, seed: int) -> tuple:
    """Real labels of ``data``'s train.csv (the first ``rows``), synthetic OOF probabilities, random folds and
    the default grid: (y, probs, folds, groups, grid)."""
    labels = read_labels(data / "labels.csv")
    train = read_train(data / "train.csv", labels.n_classes)
    if rows:
        train = train.iloc[:rows]
    y = multi_hot(list(train["labels"]), labels.n_classes)
    groups = labels.group_index()
    probs = synthetic_probs(y, np.isin(np.arange(labels.n_classes), groups.get("tag", [])), seed)
    folds = np.random.default_rng(seed + 1).integers(0, N_FOLDS, len(y))
    return y, probs, folds, groups, threshold_grid(*DEFAULT_THRESHOLD_GRID)


def main() -> int:
    p = arguments("choose_rule at full size: time and peak memory")
    p.add_argument("--rules", nargs="+", default=list(RULES))
    args = p.parse_args()
    y, probs, folds, groups, grid = bench_inputs(args.data, args.rows, args.seed)
    print(
        f"{args.data}: y {y.shape} ({y.sum(1).mean():.2f} labels per image), probs {probs.dtype}, "
        f"{N_FOLDS} folds, grid of {len(grid)}, rules {args.rules}"
    )
    rss0, peak0 = _rss_mb(), _peak_rss_mb()
    t0 = time.perf_counter()
    decision = choose_rule(y, probs, folds, groups, grid=grid, rules=args.rules, log=print)
    t_choose = time.perf_counter() - t0
    peak_choose = _peak_rss_mb()
    pred = apply_rule(decision["params"], probs, groups)
    decision["oof_f2_by_group"] = f2_by_group(y, pred, groups)
    search_threshold(y, probs, grid, min_labels=BASELINE_MIN_LABELS, max_labels=BASELINE_MAX_LABELS)
    json.dumps(decision)
    t_all = time.perf_counter() - t0
    peak = _peak_rss_mb()
    print(
        f"chosen: {decision['chosen']}; cross-fitted F2: "
        + ", ".join(f"{r} {f:.4f}" for r, f in decision["oof_f2"].items())
    )
    print(f"F2 by group: {decision['oof_f2_by_group']}; labels per image {pred.sum(1).mean():.2f}")
    print(
        f"choose_rule: {t_choose:.1f} s, peak extra RSS {peak_choose - rss0:.0f} MB; whole step {t_all:.1f} s, "
        f"peak extra RSS {peak - rss0:.0f} MB (RSS before {rss0:.0f} MB, peak before {peak0:.0f} MB)"
    )
    print(f"decision: seconds={t_all:.1f} peak_rss_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
