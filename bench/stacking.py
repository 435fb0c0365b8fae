"""Benchmark the second level (imet_utils.stacking) on the real label matrix with synthetic OOF probabilities.

    python bench/stacking.py [DATA_DIR] [--rows N] [--seed 0]

y comes from the real train.csv (real co-occurrence), probabilities from ``bench/decision.py``'s
``synthetic_probs``, folds 0..4 at random. Times ``choose_rule`` on the first level, then
``choose_second_level`` (cross-fitting over the folds, the rules chosen on its probabilities, the refit on all
OOF rows), and prints both cross-fitted F2. Last line:
``stacking: seconds=... peak_rss_mb=... f2_first=... f2_second=...`` (peak RSS of the whole process).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from decision import N_FOLDS, arguments, bench_inputs  # noqa: E402

from imet_utils.decision import RULES, choose_rule  # noqa: E402
from imet_utils.stacking import choose_second_level  # noqa: E402


def main() -> int:
    args = arguments("the second level at full size: time, peak memory, F2 against the first level").parse_args()
    y, probs, folds, groups, grid = bench_inputs(args.data, args.rows, args.seed)
    print(f"{args.data}: y {y.shape}, {N_FOLDS} folds")
    t0 = time.perf_counter()
    first = choose_rule(y, probs, folds, groups, grid=grid, rules=tuple(RULES))
    t1 = time.perf_counter()
    entry = choose_second_level(y, probs, folds, groups, grid=grid, rules=tuple(RULES), first=first, log=print).entry
    t2 = time.perf_counter()
    print(
        f"first level: choose_rule {t1 - t0:.1f} s, cross-fitted F2 {max(first['oof_f2'].values()):.4f}; "
        f"second level {t2 - t1:.1f} s, cross-fitted F2 by rule {entry['oof_f2_by_rule']}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"stacking: seconds={t2 - t1:.1f} peak_rss_mb={peak:.0f} f2_first={entry['first_level_oof_f2']:.4f} "
        f"f2_second={entry['oof_f2']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
