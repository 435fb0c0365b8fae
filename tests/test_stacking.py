"""The second level (imet_utils.stacking): cross-fitted without leaks, chosen only when it wins."""

import json

import numpy as np
import pytest
from conftest import run_patched_submit

from imet_utils.decision import RULES, apply_rule, choose_rule
from imet_utils.metrics import threshold_grid
from imet_utils.stacking import (
    FEATURES,
    LabelStats,
    choose_second_level,
    crossfit_probs,
    fit_second_level,
    pair_features,
)

GRID = threshold_grid(0.02, 0.6, 0.02)
SMALL = {"k": 12, "max_pairs": 20_000}


def _themed(n=2000, seed=0, n_c=8, n_t=32, themes=10, tag_scale=0.12):
    """Each image has a theme: one culture and three tags that go together (real co-occurrence). Cultures are
    confident; a tag's probability is low and noisy, so its theme's culture says more than its own score."""
    rng = np.random.default_rng(seed)
    culture = rng.integers(0, n_c, themes)
    tags = np.stack([rng.choice(n_t, 3, replace=False) for _ in range(themes)]) + n_c
    theme = rng.integers(0, themes, n)
    y = np.zeros((n, n_c + n_t), np.uint8)
    y[np.arange(n), culture[theme]] = 1
    keep = rng.random((n, 3)) < 0.8
    y[np.repeat(np.arange(n), 3)[keep.ravel()], tags[theme][keep]] = 1
    probs = rng.random(y.shape) ** 3 * 0.15
    probs[:, :n_c] += y[:, :n_c] * rng.uniform(0.5, 0.9, (n, n_c))
    probs[:, n_c:] += y[:, n_c:] * rng.uniform(0.0, tag_scale, (n, n_t))
    groups = {"culture": np.arange(n_c), "tag": np.arange(n_c, n_c + n_t)}
    return y, np.clip(probs, 0, 1).astype(np.float32), groups, np.arange(n) % 4


def test_features_are_finite_and_named():
    y, probs, groups, _ = _themed(n=200)
    level = fit_second_level(y, probs, groups, stats=LabelStats.of(y, probs), k=12)
    x = pair_features(probs, np.argsort(-probs, axis=1)[:, :12], groups, level.tables)
    assert x.shape == (200 * 12, len(FEATURES)) and np.isfinite(x).all()
    out = level.predict(probs)
    assert out.shape == probs.shape and (np.count_nonzero(out, axis=1) <= 12).all()
    assert ((out >= 0) & (out <= 1)).all()


def test_cross_fitting_never_lets_a_row_see_its_own_folds_labels():
    y, probs, groups, folds = _themed(n=600, seed=1)
    before = crossfit_probs(y, probs, folds, groups, **SMALL)
    shuffled = y.copy()
    held = np.flatnonzero(folds == 0)
    shuffled[held] = y[np.random.default_rng(0).permutation(held)]  # fold 0's labels, scrambled
    shuffled[held[:50]] = 1 - shuffled[held[:50]]
    after = crossfit_probs(shuffled, probs, folds, groups, **SMALL)
    assert np.array_equal(before[held], after[held])  # fold 0 is predicted from the other folds only
    assert not np.array_equal(before[folds != 0], after[folds != 0])  # which do learn from fold 0's labels


def test_it_improves_f2_on_data_with_co_occurrence_and_is_chosen():
    y, probs, groups, folds = _themed(seed=2)
    first = choose_rule(y, probs, folds, groups, grid=GRID)
    stack = choose_second_level(y, probs, folds, groups, first=first, grid=GRID, rules=RULES, **SMALL)
    entry = stack.entry
    assert entry["chosen"] and entry["oof_f2"] > entry["first_level_oof_f2"] + 0.02
    assert entry["first_level_oof_f2"] == max(first["oof_f2"].values())
    assert entry["features"] == list(FEATURES) and entry["params"]["top_candidates"] == 12
    json.dumps(entry)  # decision.json can hold it
    assert stack.level is not None and stack.rule["chosen"] == entry["rule"]
    pred = apply_rule(stack.rule["params"], stack.probs, groups)
    assert pred.sum(axis=1).min() >= 1 and pred.sum(axis=1).max() <= 10


def test_it_is_not_chosen_when_the_first_level_is_already_perfect():
    y, probs, groups, folds = _themed(n=800, seed=3)
    probs = np.where(y > 0, 0.9, 0.01).astype(np.float32)
    first = choose_rule(y, probs, folds, groups, grid=GRID)
    assert max(first["oof_f2"].values()) == pytest.approx(1.0)
    stack = choose_second_level(y, probs, folds, groups, first=first, grid=GRID, rules=RULES, **SMALL)
    assert not stack.entry["chosen"] and stack.level is None and stack.rule is None
    assert stack.entry["oof_f2"] <= stack.entry["first_level_oof_f2"]


@pytest.mark.parametrize("first_f2, chosen", [(0.0, True), (0.999, False)])
def test_it_is_chosen_only_when_its_cross_fitted_f2_beats_the_first_levels(first_f2, chosen):
    y, probs, groups, folds = _themed(n=600, seed=4)
    first = {"oof_f2": {"global": first_f2 - 0.01, "per_group": first_f2}}
    stack = choose_second_level(y, probs, folds, groups, first=first, grid=GRID, rules=RULES, **SMALL)
    assert stack.entry["chosen"] is chosen and stack.entry["first_level_oof_f2"] == first_f2
    assert (stack.level is not None) is chosen


def test_a_single_fold_skips_the_second_level():
    y, probs, groups, _ = _themed(n=300)
    folds = np.zeros(len(y), int)
    first = choose_rule(y, probs, folds, groups, grid=GRID)
    stack = choose_second_level(y, probs, folds, groups, first=first, grid=GRID, rules=RULES, **SMALL)
    assert not stack.entry["chosen"] and "skipped" in stack.entry and stack.level is None
    with pytest.raises(ValueError, match="at least 2 folds"):
        crossfit_probs(y, probs, folds, groups)


@pytest.mark.slow
def test_the_built_submit_kernel_records_and_applies_the_second_level_offline(tmp_path):
    """One local run of the built kernels (decision.json records the second level, chosen or not), then the
    built submit kernel again with the second level forced to win: its rule is applied to the test images."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from synth import generate_competition

    root = Path(__file__).resolve().parents[1]
    data, work = generate_competition(tmp_path / "data", n_train=300, n_test=40, seed=5), tmp_path / "work"
    args = [
        sys.executable,
        "build_kernel.py",
        "--run-local",
        "--data-dir",
        str(data),
        "--work-dir",
        str(work),
        "--set",
        "n_folds=2",
        "--set",
        "folds=[0,1]",
        "--set",
        "epochs=2",
    ]
    res = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sub_root = work / "submit" / "kaggle"
    out = sub_root / "working"
    entry = json.loads((out / "decision.json").read_text())["second_level"]
    assert entry["features"] == list(FEATURES) and entry["params"]["model"] == "HistGradientBoostingClassifier"
    assert entry["chosen"] == (entry["oof_f2"] > entry["first_level_oof_f2"])

    res = run_patched_submit(work, tmp_path, ("chosen = bool(f2 > best_first)", "chosen = True"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    decision = json.loads((out / "decision.json").read_text())
    assert decision["second_level"]["chosen"] and decision["first_level"]["chosen"] in RULES
    assert decision["params"]["rule"] == decision["chosen"] == decision["second_level"]["rule"]
    sub = pd.read_csv(out / "submission.csv", dtype=str, keep_default_na=False)
    assert len(sub) == 40 and all(1 <= len(s.split()) <= 10 for s in sub["attribute_ids"])
