"""iMet Collection 2019 - offline submit kernel.

Loads every fold of the train kernel(s) attached as input, chooses the decision
rule on their out-of-fold predictions, predicts the test images with TTA and
writes /kaggle/working/submission.csv (plus decision.json and threshold_curve.png).
Runs with internet off and without the efficientnet or albumentations packages.
"""
# ==== CONFIG: edit here, or override with: python build_kernel.py --set-submit key=value ====
CONFIG = dict(
    competition="imet-2019-fgvc6",
    train_kernels=["imet-2019-train"],  # set by build_kernel.py from kernel-metadata.json
    tta=2,  # views per image: original, hflip, then corner crops (up to 8)
    batch_size=64,
)
# ==== END CONFIG ====

# %% [markdown]
# ## Imports and steps

# %%
import json
from pathlib import Path

import numpy as np
import pandas as pd

from imet_utils.config import TTA_VIEWS, SubmitConfig, from_dict
from imet_utils.console import log, warn
from imet_utils.data import Competition, read_competition
from imet_utils.images import build_cache, cache_short_side
from imet_utils.decision import apply_rule, choose_rule
from imet_utils.inference import (CONFIG_FILE, blend, fallback_labels, fit_weights, label_prior, load_train_output,
                                  model_families, oof_predictions, predict_ensemble)
from imet_utils.metrics import f2_by_group, search_threshold, threshold_grid

from imet_utils.paths import find_competition_dir, find_kernel_outputs, kaggle_paths
from imet_utils.plots import plot_sample_predictions, plot_threshold_curve, show
from imet_utils.submission import format_labels, write_submission
from imet_utils.training import Budget


def load_models(config: SubmitConfig, paths) -> list:
    """The train outputs attached as input, grouped into model families (per-fold kernels of one model join)."""
    outputs = [load_train_output(d) for d in find_kernel_outputs(paths, config.train_kernels, CONFIG_FILE)]
    for out in outputs:
        log(f"train output {out.root}: {out.config.model} at {out.config.image_size}px, folds {out.folds}")
    families = model_families(outputs)
    if config.ensemble_weights is not None and len(config.ensemble_weights) != len(families):
        raise ValueError(f"ensemble_weights has {len(config.ensemble_weights)} values for {len(families)} "
                         f"model families: {[f[0].config.model for f in families]}")
    return families


def choose_decision(config: SubmitConfig, comp: Competition, families: list, out: Path) -> dict:
    """Blend weights and the decision rule, both chosen on out-of-fold predictions; never hard-coded."""
    ids, stacks, folds = oof_predictions(families, list(comp.train["id"]))
    y = comp.targets()[pd.Index(comp.train["id"]).get_indexer(ids)]
    weights = np.asarray(config.ensemble_weights or fit_weights(y, stacks), dtype=float)
    weights = weights / weights.sum()
    probs = blend(stacks, weights)
    groups = comp.labels.group_index()
    grid = threshold_grid(*config.threshold_grid)
    decision = choose_rule(y, probs, folds, groups, grid=grid, rules=config.decision_rules, log=log)
    decision["ensemble"] = [{"model": f[0].config.model, "kernels": [o.root.name for o in f], "weight": float(w)}
                            for f, w in zip(families, weights)]
    pred = apply_rule(decision["params"], probs, groups)
    decision["oof_f2_by_group"] = f2_by_group(y, pred, groups)
    log(f"decision on {len(ids)} OOF images: {decision['chosen']} (cross-fitted OOF F2 "
        f"{decision['oof_f2'][decision['chosen']]:.4f}); weights {np.round(weights, 3).tolist()}")
    log("OOF F2 by group: " + ", ".join(f"{g} {f:.4f}" for g, f in decision["oof_f2_by_group"].items()))
    _, _, scores = search_threshold(y, probs, grid, min_labels=config.min_labels, max_labels=config.max_labels)
    plot_threshold_curve(grid, scores, out / "threshold_curve.png", title=f"OOF F2 ({len(ids)} images)")
    plot_sample_predictions(comp, ids, y, pred, out / "sample_predictions.png")
    (out / "decision.json").write_text(json.dumps(decision, indent=2) + "\n")
    return decision


def predict_test(config: SubmitConfig, comp: Competition, families: list, weights, scratch: Path, budget: Budget):
    """Blended probabilities for the readable test images, and the mask of those images."""
    views = config.tta_views or TTA_VIEWS[: config.tta]
    n_models = sum(len(o.folds) for f in families for o in f)
    stacks, good = [], None
    for family in families:
        c = family[0].config
        cached = build_cache(comp.test_ids["id"], comp.test_dir, Path(config.cache_dir or scratch), split="test",
                             short_side=cache_short_side(c.image_size, c.cache_scale), max_aspect=c.max_aspect,
                             workers=config.workers)
        if good is None:  # the same for every size: a bad file is bad at any size
            good = cached.good_mask()
            for img_id, reason in cached.bad.items():
                warn(f"test image {img_id} unreadable, it gets the fallback labels: {reason}")
        share = sum(len(o.folds) for o in family) / n_models  # each family's share of the time left
        stacks.append(predict_ensemble(family, [p for p in cached.paths if p], views=views,
                                       batch_size=config.batch_size, workers=config.workers,
                                       seconds_left=budget.left() * share))
    return blend(stacks, weights), good


def make_submission(config: SubmitConfig, comp: Competition, decision: dict, probs, good, out: Path) -> Path:
    pred = np.tile(fallback_labels(label_prior(comp.targets()), config.fallback_top_k), (len(comp.test_ids), 1))
    pred[good] = apply_rule(decision["params"], probs, comp.labels.group_index())
    sub = pd.DataFrame({"id": comp.test_ids["id"], "attribute_ids": format_labels(pred)})
    path = write_submission(sub, out / "submission.csv", sample_ids=comp.test_ids["id"],
                            n_classes=comp.labels.n_classes)
    log(f"wrote {path}: {len(sub)} rows, {pred.sum(1).mean():.2f} labels per image")
    return path


# %% [markdown]
# ## Competition data and the train kernels' output

# %%
config = from_dict(SubmitConfig, CONFIG)
budget = Budget(config.time_budget_hours)
paths = kaggle_paths()
out = paths.working
out.mkdir(parents=True, exist_ok=True)
comp = read_competition(find_competition_dir(paths, config.competition))
families = load_models(config, paths)

# %% [markdown]
# ## Blend weights and decision rule, chosen on out-of-fold predictions

# %%
decision = choose_decision(config, comp, families, out)
show(out / "threshold_curve.png")
show(out / "sample_predictions.png")

# %% [markdown]
# ## Test predictions: every fold, with TTA

# %%
weights = [member["weight"] for member in decision["ensemble"]]
probs, good = predict_test(config, comp, families, weights, paths.scratch, budget)

# %% [markdown]
# ## submission.csv

# %%
make_submission(config, comp, decision, probs, good, out)
