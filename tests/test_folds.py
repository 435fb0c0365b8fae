import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from imet_utils.folds import (balanced_folds, fold_counts, fold_report, greedy_folds, label_deviation, make_folds,
                              rounding_floor)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _hard_for_greedy(n=3000, seed=0):
    """Each image has a unique-ish rare label (which greedy balances) plus correlated mid-frequency labels."""
    rng = np.random.default_rng(seed)
    n_rare, n_mid = 100, 40
    lists = []
    for i in range(n):
        rare = n_mid + i % n_rare
        # mid labels cluster by the rare label's block, so greedy's order correlates them with folds
        block = (i % n_rare) // 5
        mids = {block % n_mid, (block * 7 + 3) % n_mid, int(rng.integers(0, n_mid))}
        lists.append(sorted(mids | {rare}))
    return lists, n_rare + n_mid


@pytest.mark.parametrize("method", ["balanced", "greedy"])
def test_folds_deterministic_and_cover_every_row_once(method):
    lists, n_classes = _hard_for_greedy(800)
    a = make_folds(lists, n_classes, n_folds=5, method=method, seed=7)
    b = make_folds(lists, n_classes, n_folds=5, method=method, seed=7)
    assert np.array_equal(a, b)
    assert a.shape == (len(lists),) and set(np.unique(a)) == set(range(5))
    c = make_folds(lists, n_classes, n_folds=5, method=method, seed=8)
    assert not np.array_equal(a, c)


def _imet_like(n=5000, n_classes=300, seed=5):
    """A long-tailed label distribution with 1-5 labels per image, as in iMet."""
    rng = np.random.default_rng(seed)
    freq = 1 / np.arange(1, n_classes + 1) ** 1.1
    return [sorted(set(rng.choice(n_classes, size=int(rng.integers(1, 6)), p=freq / freq.sum()).tolist()))
            for _ in range(n)], n_classes


def test_balanced_beats_greedy_where_greedy_does_poorly():
    # Greedy balances only each image's rarest label; the labels that are never the
    # rarest of an image (the frequent ones) are left to chance.
    lists, n_classes = _imet_like()
    greedy = fold_report(lists, greedy_folds(lists, n_classes, 5, seed=42), n_classes, 5, 0)
    ours = fold_report(lists, balanced_folds(lists, n_classes, 5, seed=42), n_classes, 5, 0)
    assert ours.mean_dev < greedy.mean_dev - 0.02, (ours.mean_dev, greedy.mean_dev)
    n = len(lists) / 5
    assert max(abs(s - n) for s in ours.sizes) <= 0.01 * n
    assert ours.missing == 0


def test_balanced_reaches_the_rounding_floor():
    lists, n_classes = _imet_like(seed=6)
    folds = balanced_folds(lists, n_classes, 5)
    counts = fold_counts(lists, folds, n_classes, 5)
    assert np.nanmean(label_deviation(counts)) == pytest.approx(rounding_floor(counts), abs=0.002)


def test_local_search_repairs_a_bad_start():
    """The local search alone (from the greedy split) must get close to the floor."""
    from imet_utils.folds import _LocalSearch, _label_lists_csr

    lists, n_classes = _imet_like(seed=7)
    start = greedy_folds(lists, n_classes, 5, seed=1)
    before = np.nanmean(label_deviation(fold_counts(lists, start, n_classes, 5)))
    indptr, indices = _label_lists_csr(lists)
    search = _LocalSearch(indptr, indices, start.copy(), n_classes, 5, np.random.default_rng(0))
    search.run(__import__("time").perf_counter() + 10)
    counts = fold_counts(lists, search.folds, n_classes, 5)
    after = np.nanmean(label_deviation(counts))
    assert after < before - 0.02 and after <= rounding_floor(counts) + 0.01, (before, after)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown fold method 'nope'.*balanced"):
        make_folds([[0]] * 10, 1, method="nope")


def _write(tmp_path, train_rows, n_labels=5):
    pd.DataFrame({"attribute_id": range(n_labels), "attribute_name": [f"tag::t{i}" for i in range(n_labels)]}).to_csv(
        tmp_path / "labels.csv", index=False)
    (tmp_path / "train.csv").write_text("id,attribute_ids\n" + "".join(f"{a},{b}\n" for a, b in train_rows))
    return tmp_path / "train.csv"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "imet_utils.folds", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def test_cli_writes_folds_with_string_ids_and_report(tmp_path):
    rows = [(f"0{i:012d}", f"{i % 5} {(i * 3) % 5}") for i in range(60)]
    train = _write(tmp_path, rows)
    out = tmp_path / "f.csv"
    res = _cli(train, "--out", out, "--n-folds", "3", "--report")
    assert res.returncode == 0, res.stderr
    assert "mean dev" in res.stdout and "fold sizes" in res.stdout
    df = pd.read_csv(out, dtype={"id": str})
    assert list(df["id"]) == [r[0] for r in rows]  # leading zeros kept
    assert sorted(df["fold"].unique()) == [0, 1, 2]
    assert (tmp_path / "f.png").stat().st_size > 1000


@pytest.mark.parametrize("rows,message", [
    ([("a1", "0"), ("a2", "")], r"train.csv:3: id 'a2' has an empty attribute_ids list"),
    ([("a1", "0 9")], r"train.csv:2: id 'a1' has attribute id 9, not in labels.csv"),
])
def test_cli_rejects_bad_rows(tmp_path, rows, message):
    res = _cli(_write(tmp_path, rows), "--out", tmp_path / "f.csv")
    assert res.returncode != 0
    assert __import__("re").search(message, res.stderr), res.stderr
    assert not (tmp_path / "f.csv").exists()
