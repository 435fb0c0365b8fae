"""Decision rules fitted on OOF predictions, and their cross-fitted choice."""
import numpy as np
import pytest

from imet_utils.decision import RULES, apply_rule, choose_rule, fit_rule
from imet_utils.metrics import f2_score, search_threshold, threshold_grid

GRID = threshold_grid(0.05, 0.5, 0.01)


def _data(n=1500, seed=0, culture_scale=0.6, tag_scale=0.25):
    """Culture labels are confident, tags are not: a per-group rule should pay."""
    rng = np.random.default_rng(seed)
    n_c, n_t = 10, 30
    y = np.zeros((n, n_c + n_t), np.uint8)
    y[np.arange(n), rng.integers(0, n_c, n)] = 1
    for k in range(3):
        y[np.arange(n), n_c + rng.integers(0, n_t, n)] = rng.random(n) < 0.7
    noise = rng.random(y.shape) ** 4
    probs = np.where(y > 0, 0.0, noise * 0.3)
    probs[:, :n_c] += y[:, :n_c] * rng.uniform(culture_scale - 0.2, culture_scale + 0.3, (n, n_c))
    probs[:, n_c:] += y[:, n_c:] * rng.uniform(tag_scale - 0.15, tag_scale + 0.2, (n, n_t))
    groups = {"culture": np.arange(n_c), "tag": np.arange(n_c, n_c + n_t)}
    return y, np.clip(probs, 0, 1), groups, np.arange(n) % 5


def test_global_rule_equals_the_seed_threshold_search():
    y, probs, groups, _ = _data()
    params = fit_rule("global", y, probs, groups, GRID)
    t, f2, _ = search_threshold(y, probs, GRID, min_labels=params["min_labels"], max_labels=params["max_labels"])
    assert f2_score(y, apply_rule(params, probs, groups)) == pytest.approx(f2, abs=1e-9)


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_round_trips_and_gives_every_image_a_label(rule):
    y, probs, groups, _ = _data(seed=1)
    params = fit_rule(rule, y, probs, groups, GRID)
    pred = apply_rule(params, probs, groups)
    assert pred.shape == y.shape and pred.sum(axis=1).min() >= 1
    import json
    again = apply_rule(json.loads(json.dumps(params)), probs, groups)  # as read back from decision.json
    assert np.array_equal(pred, again)


def test_per_group_thresholds_follow_each_groups_confidence():
    y, probs, groups, _ = _data(seed=2)
    params = fit_rule("per_group", y, probs, groups, GRID)["groups"]
    assert params["culture"]["max_labels"] <= 2  # one culture per image here: the rule learns to keep ~1
    assert params["tag"]["max_labels"] >= 3
    g = fit_rule("global", y, probs, groups, GRID)
    assert f2_score(y, apply_rule({"rule": "per_group", "groups": params}, probs, groups)) > \
        f2_score(y, apply_rule(g, probs, groups))


def test_choice_is_cross_fitted_and_never_worse_than_global():
    y, probs, groups, folds = _data(seed=3)
    d = choose_rule(y, probs, folds, groups, grid=GRID)
    assert set(d["oof_f2"]) == set(RULES)
    assert d["oof_f2"][d["chosen"]] >= d["oof_f2"]["global"]
    assert d["params"]["rule"] == d["chosen"]
    # the in-sample score of the many-parameter rule is optimistic; cross-fitting is what picks
    assert d["oof_f2_in_sample"]["per_class"] >= d["oof_f2"]["per_class"]


def test_relative_rule_uses_each_images_top_probability():
    probs = np.array([[0.9, 0.2, 0.14, 0.0], [0.3, 0.2, 0.01, 0.0]])
    pred = apply_rule({"rule": "relative", "factor": 1 / 7 * 1.001 + 0.5, "min_labels": 1, "max_labels": 10},
                      probs, {"all": np.arange(4)})
    assert pred.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0]]


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown decision rule 'best'"):
        fit_rule("best", *_data()[:3], GRID)
