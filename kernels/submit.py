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

from imet_utils.config import SubmitConfig, from_dict
from imet_utils.console import log, warn
from imet_utils.data import Competition, read_competition
from imet_utils.images import build_cache, cache_short_side
from imet_utils.inference import (CONFIG_FILE, fallback_labels, label_prior, load_train_output, oof_predictions,
                                  predict_ensemble)
from imet_utils.metrics import (apply_decision, choose_global_threshold, f2_by_group, search_threshold,
                                threshold_grid)
from imet_utils.paths import find_competition_dir, find_kernel_outputs, kaggle_paths
from imet_utils.plots import plot_sample_predictions, plot_threshold_curve, show
from imet_utils.submission import format_labels, write_submission
from imet_utils.training import Budget


def load_models(config: SubmitConfig, paths, comp: Competition) -> list:
    outputs = [load_train_output(d) for d in find_kernel_outputs(paths, config.train_kernels, CONFIG_FILE)]
    for out in outputs:
        log(f"train output {out.root}: {out.config.model} at {out.config.image_size}px, folds {out.folds}")
    return outputs


def choose_decision(config: SubmitConfig, comp: Competition, outputs: list, out: Path) -> dict:
    """Picks the threshold on out-of-fold predictions; never hard-coded."""
    ids, probs = oof_predictions(outputs, list(comp.train["id"]))
    y = comp.targets()[pd.Index(comp.train["id"]).get_indexer(ids)]
    grid = threshold_grid(*config.threshold_grid)
    decision = choose_global_threshold(y, probs, grid, min_labels=config.min_labels, max_labels=config.max_labels)
    _, _, scores = search_threshold(y, probs, grid, min_labels=config.min_labels, max_labels=config.max_labels)
    plot_threshold_curve(grid, scores, out / "threshold_curve.png", title=f"OOF F2 ({len(ids)} images)")
    pred = apply_decision(decision, probs)
    decision["oof_f2_by_group"] = f2_by_group(y, pred, comp.labels.group_index())
    log("OOF F2 by group: " + ", ".join(f"{g} {f:.4f}" for g, f in decision["oof_f2_by_group"].items()))
    plot_sample_predictions(comp, ids, y, pred, out / "sample_predictions.png")
    (out / "decision.json").write_text(json.dumps(decision, indent=2) + "\n")
    log(f"decision on {len(ids)} OOF images: {decision['chosen']} {decision['params']}, "
        f"OOF F2 {decision['oof_f2'][decision['chosen']]:.4f}")
    return decision


def predict_test(config: SubmitConfig, comp: Competition, outputs: list, scratch: Path, budget: Budget):
    """Ensemble probabilities for readable test images, and the mask of those images."""
    def key(o):
        return o.config.image_size, o.config.cache_scale, o.config.max_aspect

    total, good = 0.0, None
    for size, scale, aspect in sorted({key(o) for o in outputs}):
        cached = build_cache(comp.test_ids["id"], comp.test_dir, Path(config.cache_dir or scratch), split="test",
                             short_side=cache_short_side(size, scale), max_aspect=aspect, workers=config.workers)
        for img_id, reason in cached.bad.items():
            warn(f"test image {img_id} unreadable, it gets the fallback labels: {reason}")
        good = cached.good_mask()  # the same at every size: a bad file is bad at any size
        group = [o for o in outputs if key(o) == (size, scale, aspect)]
        share = len(group) / len(outputs)  # each group of models gets its share of the time left
        probs = predict_ensemble(group, [p for p in cached.paths if p], tta=config.tta,
                                 batch_size=config.batch_size, workers=config.workers,
                                 seconds_left=budget.left() * share)
        total = total + probs * len(group)
    return total / len(outputs), good


def make_submission(config: SubmitConfig, comp: Competition, decision: dict, probs, good, out: Path) -> Path:
    pred = np.tile(fallback_labels(label_prior(comp.targets()), config.fallback_top_k), (len(comp.test_ids), 1))
    pred[good] = apply_decision(decision, probs)
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
outputs = load_models(config, paths, comp)

# %% [markdown]
# ## Decision rule, chosen on out-of-fold predictions

# %%
decision = choose_decision(config, comp, outputs, out)
show(out / "threshold_curve.png")
show(out / "sample_predictions.png")

# %% [markdown]
# ## Test predictions: every fold, with TTA

# %%
probs, good = predict_test(config, comp, outputs, paths.scratch, budget)

# %% [markdown]
# ## submission.csv

# %%
make_submission(config, comp, decision, probs, good, out)
