"""Decision rules fitted on OOF predictions, and their cross-fitted choice."""

import json

import numpy as np
import pytest

from imet_utils import decision
from imet_utils.config import ConfigError, SubmitConfig, from_dict
from imet_utils.decision import (
    RELATIVE_FACTORS,
    RULES,
    SHRINK_POSITIVES,
    Rule,
    apply_rule,
    choose_rule,
    get_rule,
)
from imet_utils.metrics import binarize, f2_per_sample, search_threshold, threshold_grid
from kernel_build.scoring import f2_score, fit_rule

GRID = threshold_grid(0.05, 0.5, 0.01)
COARSE = threshold_grid(0.05, 0.5, 0.05)


def _data(n=1500, seed=0, culture_scale=0.6, tag_scale=0.25):
    """Culture labels are confident, tags are not: a per-group rule should pay."""
    rng = np.random.default_rng(seed)
    n_c, n_t = 10, 30
    y = np.zeros((n, n_c + n_t), np.uint8)
    y[np.arange(n), rng.integers(0, n_c, n)] = 1
    for _ in range(3):
        y[np.arange(n), n_c + rng.integers(0, n_t, n)] = rng.random(n) < 0.7
    noise = rng.random(y.shape) ** 4
    probs = np.where(y > 0, 0.0, noise * 0.3)
    probs[:, :n_c] += y[:, :n_c] * rng.uniform(culture_scale - 0.2, culture_scale + 0.3, (n, n_c))
    probs[:, n_c:] += y[:, n_c:] * rng.uniform(tag_scale - 0.15, tag_scale + 0.2, (n, n_t))
    groups = {"culture": np.arange(n_c), "tag": np.arange(n_c, n_c + n_t)}
    return y, np.clip(probs, 0, 1), groups, np.arange(n) % 5


def test_global_rule_equals_the_baseline_threshold_search():
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
    again = apply_rule(json.loads(json.dumps(params)), probs, groups)  # as read back from decision.json
    assert np.array_equal(pred, again)


def test_per_group_thresholds_follow_each_groups_confidence():
    y, probs, groups, _ = _data(seed=2)
    params = fit_rule("per_group", y, probs, groups, GRID)["groups"]
    assert params["culture"]["max_labels"] <= 2  # one culture per image here: the rule learns to keep ~1
    assert params["tag"]["max_labels"] >= 3
    g = fit_rule("global", y, probs, groups, GRID)
    assert f2_score(y, apply_rule({"rule": "per_group", "groups": params}, probs, groups)) > f2_score(
        y, apply_rule(g, probs, groups)
    )


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
    pred = apply_rule(
        {"rule": "relative", "factor": 1 / 7 * 1.001 + 0.5, "min_labels": 1, "max_labels": 10},
        probs,
        {"all": np.arange(4)},
    )
    assert pred.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0]]


def test_unknown_rule_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown decision rule\(s\) \['best'\]; known: \['global', 'per_group'"):
        fit_rule("best", *_data()[:3], GRID)
    with pytest.raises(ValueError, match=r"unknown decision rule 'best'; known: \['global', 'per_group'"):
        get_rule("best")
    with pytest.raises(ConfigError, match=r"unknown decision rule\(s\) \['best'\]; known: \['global'"):
        from_dict(SubmitConfig, {"decision_rules": ["global", "best"]})


def _top_k_rule():
    """A rule registered in one entry: each image's k most probable labels, k fitted on the rows."""

    def fit(f):
        return {"k": 2}

    def select(params, probs, groups):
        return binarize(probs, 1.0, min_labels=params["k"], max_labels=params["k"])

    return Rule(fit, select)


def test_a_rule_registered_in_one_entry_competes_is_applied_and_is_a_valid_config_name(monkeypatch):
    monkeypatch.setitem(RULES, "top2", _top_k_rule())
    assert from_dict(SubmitConfig, {"decision_rules": ["global", "top2"]}).decision_rules == ("global", "top2")
    y, probs, groups, folds = _data(n=300, seed=4)
    d = choose_rule(y, probs, folds, groups, grid=COARSE, rules=("top2", "global"))
    assert set(d["oof_f2"]) == {"top2", "global"}
    top2 = fit_rule("top2", y, probs, groups, COARSE)
    assert top2 == {"rule": "top2", "k": 2, "min_labels_total": 1, "max_labels_total": 10}
    pred = apply_rule(top2, probs, groups)
    assert (pred.sum(axis=1) == 2).all()
    # no fast_f2: scored from the matrix, as apply_rule labels the rows
    assert d["oof_f2_in_sample"]["top2"] == pytest.approx(f2_score(y, pred), abs=1e-12)


def test_the_default_rules_are_the_registry():
    assert SubmitConfig().decision_rules == tuple(decision.RULES)


def _confident(n=600, seed=5):
    """Labels as in _data, probabilities close to them: a rule fitted here may expect labels above 0.5."""
    y, _, groups, folds = _data(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    return y, np.clip(0.9 * y + 0.05 * rng.random(y.shape), 0, 1), groups, folds


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bounds", [(1, 10), (2, 3)])
def test_every_image_gets_a_label_on_data_the_rule_was_not_fitted_on(rule, bounds):
    lo, hi = bounds
    y, probs, groups, _ = _confident()
    params = json.loads(json.dumps(fit_rule(rule, y, probs, groups, GRID, min_labels=lo, max_labels=hi)))
    assert (params["min_labels_total"], params["max_labels_total"]) == (lo, hi)
    rng = np.random.default_rng(0)
    for test in (
        probs * 0.01,
        np.zeros_like(probs),
        rng.random(probs.shape),
        np.ones_like(probs),
        (probs * 0.01).astype(np.float32),
        rng.random((3, probs.shape[1])) ** 8,
    ):
        counts = apply_rule(params, test, groups).sum(axis=1)
        assert counts.min() >= lo and counts.max() <= hi, (rule, counts.min(), counts.max())


def test_choose_rule_respects_the_bounds_in_every_rule():
    y, probs, groups, folds = _data(n=800, seed=6)
    d = choose_rule(y, probs, folds, groups, grid=GRID, min_labels=2, max_labels=3)
    for rule in RULES:
        params = fit_rule(rule, y, probs, groups, GRID, min_labels=2, max_labels=3)
        assert (params["min_labels_total"], params["max_labels_total"]) == (2, 3)
        if "min_labels" in params:  # global and relative: their own counts are searched within the bounds
            assert 2 <= params["min_labels"] <= params["max_labels"] <= 3
        counts = apply_rule(params, probs * 0.01, groups).sum(axis=1)
        assert counts.min() == 2 and counts.max() <= 3
    assert d["params"]["min_labels_total"] == 2 and d["params"]["max_labels_total"] == 3


@pytest.mark.parametrize(
    "params",
    [
        {
            "rule": "global",
            "threshold": 0.3,
            "min_labels": 0,
            "max_labels": 10,
        },  # what the 2019 baseline notebook's search could pick
        {"rule": "relative", "factor": 0.5, "min_labels": 0, "max_labels": 10},
        {
            "rule": "per_group",
            "groups": {
                "culture": {"threshold": 0.9, "min_labels": 0, "max_labels": 8},
                "tag": {"threshold": 0.9, "min_labels": 0, "max_labels": 8},
            },
        },
    ],
)
def test_decision_json_without_the_bounds_applies_with_one_to_ten_labels(params):
    _, probs, groups, _ = _data(n=200, seed=7)
    for test in (probs * 0.01, np.zeros_like(probs), np.ones_like(probs)):
        counts = apply_rule(params, test, groups).sum(axis=1)
        assert counts.min() >= 1 and counts.max() <= 10


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"min_labels": 0}, "min_labels must be >= 1.*got 0"),
        ({"min_labels": -2}, "min_labels must be >= 1.*got -2"),
        ({"min_labels": 4, "max_labels": 3}, "max_labels must be >= min_labels.*3 < min_labels 4"),
    ],
)
def test_bad_bounds_are_named(kwargs, message):
    y, probs, groups, folds = _data(n=100)
    with pytest.raises(ValueError, match=message):
        choose_rule(y, probs, folds, groups, grid=GRID, **kwargs)
    with pytest.raises(ValueError, match=message):
        fit_rule("global", y, probs, groups, GRID, **kwargs)


# A plain reference: every candidate scored by binarize + f2_score, first best wins, in loop order.


def _choices(lo, hi):
    return (
        sorted({min(max(m, lo), hi) for m in (0, 1, 2)}),
        sorted({min(max(m, lo, 1), hi) for m in (1, 2, 3, 4, 6, 8, 10)}),
    )


def _first_best(score, candidates):
    best, arg = -1.0, None
    for c in candidates:
        s = score(*c)
        if s > best:
            best, arg = s, c
    return arg


def _by_group(probs, groups, params):
    pred = np.zeros(probs.shape, np.uint8)
    for g, idx in groups.items():
        pred[:, idx] = binarize(probs[:, idx], **params[g])
    return pred


def _reference_fit(rule, y, probs, groups, grid, lo, hi):
    mins, maxs = _choices(lo, hi)
    combos = [(mn, mx) for mn in mins for mx in maxs if mx >= max(mn, 1)]
    t0, mn, mx = _first_best(
        lambda t, a, b: f2_score(y, binarize(probs, t, min_labels=a, max_labels=b)),
        [(t, a, b) for t in grid for a, b in combos],
    )
    bounds = {"min_labels_total": lo, "max_labels_total": hi}
    if rule == "global":
        return {"rule": rule, "threshold": float(t0), "min_labels": mn, "max_labels": mx, **bounds}
    if rule == "relative":
        top = probs.max(axis=1, keepdims=True)
        f, mx = _first_best(
            lambda f, b: f2_score(y, binarize(probs, top * f, min_labels=lo, max_labels=b)),
            [(f, b) for f in RELATIVE_FACTORS for b in maxs],
        )
        return {"rule": rule, "factor": float(f), "min_labels": lo, "max_labels": int(mx), **bounds}
    g_mins, g_maxs = _choices(0, hi)
    g_combos = [(a, b) for a in g_mins for b in g_maxs if b >= max(a, 1)]
    params = {g: {"threshold": float(t0), "min_labels": g_mins[0], "max_labels": g_maxs[-1]} for g in groups}
    for _ in range(2):
        for g in groups:

            def score(t, a, b, g=g):
                return f2_score(
                    y, _by_group(probs, groups, {**params, g: {"threshold": t, "min_labels": a, "max_labels": b}})
                )

            t, a, b = _first_best(score, [(t, a, b) for t in grid for a, b in g_combos])
            params[g] = {"threshold": float(t), "min_labels": a, "max_labels": b}
    if rule == "per_group":
        return {"rule": rule, "groups": params, **bounds}
    pos = y.sum(axis=0)
    tp = np.stack([((probs > t) & (y > 0)).sum(axis=0) for t in grid], axis=1)
    pred = np.stack([(probs > t).sum(axis=0) for t in grid], axis=1)
    denom = 5 * tp + 4 * (pos[:, None] - tp) + (pred - tp)
    own = np.asarray(grid)[np.argmax(np.divide(5 * tp, denom, out=np.zeros(tp.shape), where=denom > 0), axis=1)]
    group_t = np.empty(y.shape[1])
    for g, idx in groups.items():
        group_t[idx] = params[g]["threshold"]
    w = pos / (pos + SHRINK_POSITIVES)
    return {"rule": rule, "groups": params, "thresholds": np.round(w * own + (1 - w) * group_t, 4).tolist(), **bounds}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bounds,grid", [((1, 10), COARSE), ((2, 3), COARSE[::-1]), ((1, 4), COARSE[[3, 0, 7, 1]])])
def test_fast_fit_equals_the_reference_search(rule, bounds, grid):
    y, probs, groups, _ = _data(n=400, seed=8)
    assert fit_rule(rule, y, probs, groups, grid, min_labels=bounds[0], max_labels=bounds[1]) == _reference_fit(
        rule, y, probs, groups, grid, *bounds
    )


def _reference_apply(params, probs, groups):
    """Row by row: the rule's labels (ties: lower class first), then the total bounds."""
    lo = max(1, params.get("min_labels_total", 1))
    hi = params.get("max_labels_total", 10)
    out = np.zeros(probs.shape, np.uint8)
    for i, row in enumerate(probs.astype(np.float64)):

        def top(cols, n, row=row):
            return [int(c) for c in np.asarray(cols)[np.argsort(-row[cols], kind="stable")][:n]]

        if params["rule"] in ("global", "relative"):
            t = params["threshold"] if params["rule"] == "global" else row.max() * params["factor"]
            n = min(max(int((row > t).sum()), params["min_labels"]), params["max_labels"])
            chosen = top(np.arange(len(row)), n)
        else:
            chosen = []
            for g, idx in groups.items():
                p = params["groups"][g]
                t = np.asarray(params["thresholds"])[idx] if params["rule"] == "per_class" else p["threshold"]
                above = np.asarray(idx)[row[idx] > t]
                if len(above) < p["min_labels"]:
                    chosen += top(idx, p["min_labels"])
                else:
                    chosen += top(above, p["max_labels"])
        if len(chosen) < lo:
            chosen += top(np.setdiff1d(np.arange(len(row)), chosen), lo - len(chosen))
        out[i, top(chosen, hi)] = 1
    return out


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bounds", [(1, 10), (2, 3), (1, 2), (4, 6)])
def test_apply_rule_equals_a_row_by_row_reference_with_ties_and_float32(rule, bounds):
    y, probs, groups, _ = _data(n=300, seed=9)
    params = fit_rule(rule, y, probs, groups, COARSE, min_labels=bounds[0], max_labels=bounds[1])
    ties = np.round(probs, 1)  # many equal probabilities
    for test in (probs, ties, ties * 0.1, probs.astype(np.float32), np.zeros_like(probs)):
        assert np.array_equal(apply_rule(params, test, groups), _reference_apply(params, test, groups))


@pytest.mark.parametrize("bounds", [(1, 10), (2, 3), (4, 6)])  # 4: more than the groups' minimums give
@pytest.mark.parametrize("layout", ["two", "partial", "many"])
def test_choose_rule_scores_equal_fit_apply_and_f2_fold_by_fold(bounds, layout):
    y, probs, groups, folds = _data(n=600, seed=10)
    if layout == "partial":  # groups that leave classes out: scored on the matrix instead of the tables
        groups = {"culture": groups["culture"], "tag": groups["tag"][:-5]}
    if layout == "many":  # 2020-style: small groups, one of a single class, one (class 1, 2) never true
        y[:, 1:3] = 0
        groups = {"a": np.array([0]), "b": np.array([1, 2]), "c": np.arange(3, 10), "d": np.arange(10, 40)}
    probs = np.round(probs, 2).astype(np.float32)
    d = choose_rule(y, probs, folds, groups, grid=COARSE, min_labels=bounds[0], max_labels=bounds[1])
    for rule in RULES:
        pred = np.zeros(y.shape, np.uint8)
        for k in range(5):
            held = folds == k
            params = fit_rule(rule, y[~held], probs[~held], groups, COARSE, min_labels=bounds[0], max_labels=bounds[1])
            pred[held] = apply_rule(params, probs[held], groups)
        assert d["oof_f2"][rule] == pytest.approx(f2_per_sample(y, pred).mean(), abs=1e-12)
        full = fit_rule(rule, y, probs, groups, COARSE, min_labels=bounds[0], max_labels=bounds[1])
        assert d["oof_f2_in_sample"][rule] == pytest.approx(f2_score(y, apply_rule(full, probs, groups)), abs=1e-12)
    assert d["params"] == fit_rule(d["chosen"], y, probs, groups, COARSE, min_labels=bounds[0], max_labels=bounds[1])


def test_a_gain_within_noise_keeps_the_global_rule():
    y, probs, groups, folds = _data(n=150, seed=18, culture_scale=0.45, tag_scale=0.45)
    d = choose_rule(y, probs, folds, groups, grid=GRID)
    best = max(d["oof_f2"], key=d["oof_f2"].get)
    assert best != "global" and d["oof_f2"][best] > d["oof_f2"]["global"]  # a higher mean, but a noisy one
    assert d["chosen"] == "global" and d["params"]["rule"] == "global"
    assert "within noise" in d["chosen_because"] and best in d["chosen_because"]


def test_a_clear_gain_replaces_the_global_rule():
    y, probs, groups, folds = _data(seed=2)  # confident cultures, unsure tags: per-group thresholds pay
    d = choose_rule(y, probs, folds, groups, grid=GRID)
    assert d["chosen"] != "global" and d["chosen"] == max(d["oof_f2"], key=d["oof_f2"].get)
    assert d["chosen_because"].endswith("clear")
