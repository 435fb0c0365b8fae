import numpy as np
import pytest
from sklearn.metrics import fbeta_score

from imet_utils.metrics import (
    binarize,
    bootstrap_interval,
    bootstrap_means,
    bound_label_counts,
    f2_by_group,
    search_threshold,
    threshold_grid,
    top_k,
)
from kernel_build.scoring import best_constant_f2, f2_score


def _baseline_binarize(probs, threshold, min_labels=1, max_labels=10):
    """The 2019 baseline notebook's binarize_prediction, row by row, as the reference."""
    out = np.zeros_like(probs, dtype=np.uint8)
    for i, row in enumerate(probs):
        order = np.argsort(-row, kind="stable")
        n = int((row > threshold).sum())
        n = min(max(n, min_labels), max_labels)
        out[i, order[:n]] = 1
    return out


@pytest.mark.parametrize("seed", range(5))
def test_f2_matches_sklearn_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((200, 30)) < 0.1).astype(int)
    y[np.arange(200), rng.integers(0, 30, 200)] = 1  # every image has a label, as in iMet
    p = (rng.random((200, 30)) < 0.15).astype(int)
    assert f2_score(y, p) == pytest.approx(fbeta_score(y, p, beta=2, average="samples", zero_division=0))


@pytest.mark.parametrize(
    "true,pred,expected",
    [
        ([1, 0, 0, 0], [1, 0, 0, 0], 1.0),
        ([1, 1, 0, 0], [1, 0, 0, 0], 5 * 1 / (5 * 1 + 4 * 1)),  # one miss: tp 1, fn 1
        ([1, 0, 0, 0], [1, 1, 1, 0], 5 * 1 / (5 * 1 + 2)),  # two false positives
        ([0, 0, 1, 0], [1, 0, 0, 0], 0.0),
    ],
)
def test_f2_hand_computed(true, pred, expected):
    assert f2_score(np.array([true]), np.array([pred])) == pytest.approx(expected)
    assert f2_score(np.array([true]), np.array([pred])) == pytest.approx(
        fbeta_score(np.array([true]), np.array([pred]), beta=2, average="samples", zero_division=0)
    )


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("min_labels,max_labels", [(1, 10), (0, 3), (2, 5)])
@pytest.mark.parametrize("decimals", [None, 1])  # 1: many tied probabilities
def test_binarize_equals_the_baseline_rule(threshold, min_labels, max_labels, decimals):
    rng = np.random.default_rng(3)
    probs = rng.random((300, 40)) ** 3
    probs = probs if decimals is None else np.round(probs, decimals)
    ours = binarize(probs, threshold, min_labels=min_labels, max_labels=max_labels)
    assert np.array_equal(ours, _baseline_binarize(probs, threshold, min_labels, max_labels))
    counts = ours.sum(1)
    assert counts.min() >= min_labels and counts.max() <= max_labels


def test_binarize_hand_made():
    probs = np.array(
        [
            [0.9, 0.1, 0.3, 0.2],  # one above 0.25
            [0.1, 0.2, 0.05, 0.0],  # none above: top 1 kept
            [0.6, 0.7, 0.8, 0.9],
        ]
    )  # all above, max 2: top 2 kept
    got = binarize(probs, 0.25, min_labels=1, max_labels=2)
    assert got.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 1]]


def test_binarize_per_class_threshold_respects_counts():
    probs = np.array([[0.5, 0.4, 0.3], [0.1, 0.1, 0.1]])
    got = binarize(probs, np.array([0.6, 0.35, 0.2]), min_labels=1, max_labels=1)
    assert got.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_threshold_search_finds_the_sklearn_best():
    rng = np.random.default_rng(0)
    y = (rng.random((150, 20)) < 0.15).astype(int)
    probs = np.clip(y * 0.35 + rng.random(y.shape) * 0.5, 0, 1)
    grid = threshold_grid(0.05, 0.5, 0.01)
    assert len(grid) == 46 and grid[0] == 0.05 and grid[-1] == 0.5
    t, f2, scores = search_threshold(y, probs, grid)
    ref = [fbeta_score(y, _baseline_binarize(probs, g), beta=2, average="samples", zero_division=0) for g in grid]
    assert np.allclose(scores, ref)
    assert f2 == pytest.approx(max(ref)) and t == pytest.approx(grid[int(np.argmax(ref))])


def test_constant_floor_is_below_a_useful_model():
    rng = np.random.default_rng(1)
    y = (rng.random((100, 12)) < 0.2).astype(int)
    probs = np.clip(y * 0.5 + rng.random(y.shape) * 0.4, 0, 1)
    _, f2, _ = search_threshold(y, probs, threshold_grid(0.05, 0.5, 0.05))
    floor = best_constant_f2(y)
    # the floor is the best over k of the k most frequent labels for every image (a returned 0 fails here)
    order = np.argsort(-y.mean(axis=0), kind="stable")
    by_k = [f2_score(y, np.broadcast_to(np.isin(np.arange(12), order[:k]), y.shape)) for k in range(1, 13)]
    assert floor == pytest.approx(max(by_k)) and floor > 0.2
    assert floor < f2


@pytest.mark.parametrize(
    "row,probs,lo,hi,expected",
    [
        ([0, 0, 0, 0], [0.1, 0.4, 0.3, 0.2], 2, 3, [0, 1, 1, 0]),  # too few: the most probable others
        ([1, 0, 0, 0], [0.1, 0.4, 0.3, 0.2], 2, 3, [1, 1, 0, 0]),  # a selected one stays, even if unlikely
        ([1, 1, 1, 1], [0.1, 0.4, 0.3, 0.2], 1, 2, [0, 1, 1, 0]),  # too many: the most probable selected
        ([1, 0, 1, 1], [0.1, 0.4, 0.3, 0.2], 1, 1, [0, 0, 1, 0]),  # ...never an unselected one
        ([0, 0, 0, 0], [0.2, 0.2, 0.2, 0.2], 2, 3, [1, 1, 0, 0]),  # ties: the lower class id
        ([0, 0, 0, 0], [0.1, 0.4, 0.3, 0.2], 9, 10, [1, 1, 1, 1]),  # at most every class
    ],
)
def test_label_count_bound_by_hand(row, probs, lo, hi, expected):
    sel = np.array([row], dtype=bool)
    out = bound_label_counts(sel, np.array([probs]), lo, hi)
    assert out.astype(int).tolist() == [expected]


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_the_spread():
    rng = np.random.default_rng(0)
    values = rng.normal(0.3, 1, 2000)
    lo, hi = bootstrap_interval(values, resamples=400)
    assert lo < values.mean() < hi and 0.05 < hi - lo < 0.2  # about 4 standard errors (1 / sqrt(2000))
    assert bootstrap_interval(np.full(500, 0.01), resamples=50) == pytest.approx((0.01, 0.01))
    narrow = bootstrap_interval(values / 10, resamples=400)
    assert narrow[1] - narrow[0] == pytest.approx((hi - lo) / 10, rel=1e-9)  # same resamples, scaled


def test_bootstrap_means_do_not_depend_on_the_block_size(monkeypatch):
    """Drawn a block at a time to bound memory; the blocks must not change the draws."""
    from imet_utils import metrics

    values = np.random.default_rng(1).random(1000)
    whole = bootstrap_means(values, 64, seed=3)
    monkeypatch.setattr(metrics, "BLOCK_CELLS", 10_000)  # 10 resamples a block
    assert np.array_equal(bootstrap_means(values, 64, seed=3), whole)


def test_f2_by_group_uses_each_groups_labels_only():
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    p = np.array([[1, 0, 0, 1], [0, 1, 1, 0]])
    got = f2_by_group(y, p, {"culture": np.array([0, 1]), "tag": np.array([2, 3])})
    assert got["culture"] == pytest.approx(1.0)
    assert got["tag"] == pytest.approx(0.0)  # row 2 has no true tag and is skipped


def test_f2_by_group_is_none_for_a_group_without_labels():
    y = np.array([[1, 0, 0, 0], [0, 1, 0, 0]])
    p = np.array([[1, 0, 1, 0], [1, 1, 0, 0]])
    got = f2_by_group(y, p, {"culture": np.array([0, 1]), "dimension": np.array([2, 3])})
    assert got["dimension"] is None  # nothing to score: not nan, which prints as a score
    assert got["culture"] == pytest.approx(f2_score(y[:, :2], p[:, :2]))


@pytest.mark.parametrize("k", [1, 2, 3, 10, 40, 50])
@pytest.mark.parametrize("kind", ["continuous", "ties", "zeros", "float32", "sparse"])
def test_top_k_equals_a_stable_descending_sort(k, kind):
    rng = np.random.default_rng(4)
    probs = {
        "continuous": rng.random((500, 45)) ** 6,
        "ties": np.round(rng.random((500, 45)), 1),
        "zeros": np.zeros((20, 45)),
        "float32": (rng.random((500, 45)) ** 6).astype(np.float32),
        "sparse": np.where(rng.random((500, 45)) < 0.9, 0.0, rng.random((500, 45))),
    }[kind]
    assert np.array_equal(top_k(probs, k), np.argsort(-probs, axis=1, kind="stable")[:, :k])


@pytest.mark.parametrize("min_labels,max_labels", [(0, 3), (2, 5), (1, 1)])
def test_threshold_search_with_label_counts_equals_the_baseline_rule(min_labels, max_labels):
    rng = np.random.default_rng(5)
    y = (rng.random((150, 20)) < 0.15).astype(int)
    probs = np.round(np.clip(y * 0.35 + rng.random(y.shape) * 0.5, 0, 1), 2)
    grid = threshold_grid(0.05, 0.5, 0.01)
    _, _, scores = search_threshold(y, probs, grid, min_labels=min_labels, max_labels=max_labels)
    ref = [f2_score(y, _baseline_binarize(probs, g, min_labels, max_labels)) for g in grid]
    assert np.allclose(scores, ref, atol=1e-12)


def test_float32_probabilities_meet_a_threshold_as_in_float64():
    probs = np.array([[0.1, 0.3, 0.2]], dtype=np.float32)  # float32(0.1) > 0.1 and float32(0.3) > 0.3 in float64
    assert binarize(probs, 0.1, min_labels=0).tolist() == [[1, 1, 1]]
    assert binarize(probs, 0.3, min_labels=0).tolist() == [[0, 1, 0]]
    assert binarize(probs, np.float32(0.3), min_labels=0).tolist() == [[0, 0, 0]]
