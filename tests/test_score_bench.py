"""bench/score.py's pure parts: its bootstrap intervals, per-image cross-fitted F2, --family parser, table."""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imet_utils.data import read_labels  # noqa: E402
from imet_utils.decision import RULES, choose_rule  # noqa: E402
from imet_utils.metrics import bootstrap_interval  # noqa: E402
from synth.realistic import REALISTIC_GROUPS  # noqa: E402


def _load_score():
    spec = importlib.util.spec_from_file_location("bench_score", ROOT / "bench" / "score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


score = _load_score()


def test_importing_the_bench_does_not_import_tensorflow():
    import subprocess

    path = str(ROOT / "bench" / "score.py")
    code = (
        f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('s', {path!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['s'] = m; spec.loader.exec_module(m); "
        "print('tensorflow' in sys.modules, m.FAMILIES)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().startswith("False (('A', {}), ('B', "), out.stderr[-2000:]


def test_the_bench_uses_the_packages_bootstrap():
    """One bootstrap: the table's intervals are imet_utils.metrics.bootstrap_interval's (as the submit kernel's
    gain test), not a copy of it."""
    assert score.bootstrap_interval is bootstrap_interval
    assert not hasattr(score, "bootstrap_means") and not hasattr(score, "BOOT_CELLS")
    values = np.random.default_rng(1).random(500)
    lo, hi = bootstrap_interval(values, resamples=50, seed=3)
    assert score.cell(values, 50, 3) == f"{values.mean():.4f} [{lo:.4f}, {hi:.4f}]"


def test_bootstrap_is_deterministic_for_a_seed_and_shrinks_with_more_images():
    values = np.random.default_rng(1).random(500)
    first = bootstrap_interval(values, resamples=400, seed=3)
    assert first == bootstrap_interval(values, resamples=400, seed=3)
    assert first != bootstrap_interval(values, resamples=400, seed=4)
    rng = np.random.default_rng(2)
    widths = []
    for n_images in (100, 400, 1600):
        lo, hi = bootstrap_interval(rng.random(n_images), resamples=500, seed=0)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.3)  # 1 / sqrt(n)


def test_paired_deltas_of_identical_rows_are_zero_and_of_a_shift_the_shift():
    b = np.random.default_rng(5).random(300)
    assert bootstrap_interval(b - b.copy(), resamples=200) == (0.0, 0.0)
    lo, hi = bootstrap_interval((b + 0.05) - b, resamples=200)
    assert lo == pytest.approx(0.05, abs=1e-9) and hi == pytest.approx(0.05, abs=1e-9)
    # pairing removes the images' own spread: a small noisy gain is resolved although the rows' intervals overlap
    a = b + 0.01 + np.random.default_rng(6).normal(0, 0.01, len(b))
    lo, hi = bootstrap_interval(a - b, resamples=500)
    assert 0.0 < lo < 0.01 < hi
    a_lo, a_hi = bootstrap_interval(a, resamples=500)
    b_lo, b_hi = bootstrap_interval(b, resamples=500)
    assert a_lo < b_hi


def _synthetic(tmp_path, n=360, seed=0):
    """y and float32 probabilities over the realistic data's label layout (a labels.csv read back), 5 folds."""
    names = [f"{g}::{g}{i}" for g, k in REALISTIC_GROUPS for i in range(k)]
    pd.DataFrame({"attribute_id": range(len(names)), "attribute_name": names}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    groups = read_labels(tmp_path / "labels.csv").group_index()
    rng = np.random.default_rng(seed)
    n_classes = len(names)
    y = (rng.random((n, n_classes)) < rng.uniform(0.02, 0.15, n_classes)).astype(np.uint8)
    y[np.arange(n), rng.choice(groups["culture"], n)] = 1  # every image has a culture
    logits = rng.normal(-2.5, 1.0, y.shape) + 2.5 * y
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    return y, probs, rng.integers(0, 5, n), groups


@pytest.mark.parametrize("seed", [0, 1])
def test_crossfit_f2_per_image_agrees_with_choose_rule(tmp_path, seed):
    y, probs, folds, groups = _synthetic(tmp_path, seed=seed)
    decision = choose_rule(y, probs, folds, groups, grid=score.GRID, rules=tuple(RULES), **score.BOUNDS)
    for rule in RULES:
        per_image = score.crossfit_f2(rule, y, probs, folds, groups)
        assert per_image.shape == (len(y),) and ((per_image >= 0) & (per_image <= 1)).all()
        assert per_image.mean() == pytest.approx(decision["oof_f2"][rule], abs=1e-6), rule


def test_crossfit_f2_respects_other_label_bounds(tmp_path):
    y, probs, folds, groups = _synthetic(tmp_path, n=200, seed=3)
    decision = choose_rule(
        y, probs, folds, groups, grid=score.GRID, rules=("global", "relative"), min_labels=2, max_labels=4
    )
    for rule in ("global", "relative"):
        f2 = score.crossfit_f2(rule, y, probs, folds, groups, min_labels=2, max_labels=4)
        assert f2.mean() == pytest.approx(decision["oof_f2"][rule], abs=1e-6)


def test_parse_family():
    assert score.parse_family("A") == ("A", {})
    assert score.parse_family("A:") == ("A", {})
    assert score.parse_family("B:image_size=96,epochs=3") == ("B", {"image_size": "96", "epochs": "3"})
    assert score.parse_family("C:folds=[0,1],model=tiny-cnn") == ("C", {"folds": "[0,1]", "model": "tiny-cnn"})
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME:KEY=VAL"):
        score.parse_family("D:image_size")


def test_table_cells_and_paired_rows(capsys):
    import re

    assert re.fullmatch(r"0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]", score.cell(np.full(9, 0.5) + np.arange(9) / 100, 50, 0))
    assert re.fullmatch(r"[+-]0\.\d{4} \[[+-]0\.\d{4}, [+-]0\.\d{4}\]", score.cell(np.arange(5) / 10, 50, 0, True))
    assert score.cell(np.zeros(4), 50, 0, True) == "±0 (identical)"
    assert score.cell(None, 50, 0, note="0.3677 (oracle)") == "0.3677 (oracle)"
    base = score.Row("base", np.full(4, 0.5), np.array([0.2, 0.4, 0.6]), np.array(["a", "b", "c"]))
    more = score.Row("more", np.full(4, 0.6), np.array([0.8, 0.3]), np.array(["c", "a"]), base=base)
    score.print_table([base, more], 20, 0)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("| 2. more (Δ vs 1) | 0.6000 [0.6000, 0.6000] | +0.1000 [+0.1000, +0.1000] | 0.5500 [")
    assert last.endswith("| +0.1500 [+0.1000, +0.2000] |")  # c: 0.8 - 0.6, a: 0.3 - 0.2, paired by id
