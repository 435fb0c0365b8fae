"""iMet Collection 2019 - offline submit kernel.

Loads every fold of the train kernel(s) attached as input, chooses the decision
rule on their out-of-fold predictions, predicts the test images with TTA and
writes /kaggle/working/submission.csv (plus decision.json and threshold_curve.png).
The blended test probabilities are saved (test_probs.npz) before any label is decided: if a later step
fails, a rerun with reuse_predictions set re-decides from them in seconds, without predicting again.
Runs with internet off and without the efficientnet or albumentations packages.
"""

# ==== CONFIG: only what this kernel changes from SubmitConfig's defaults. The build writes every field, with its
# help, into the built kernel; override at build time with: python build_kernel.py --set-submit key=value ====
CONFIG = dict()
# ==== END CONFIG ====
CONTENT_HASH = ""  # the build writes this kernel's content hash here; run_status.json records it

# %% [markdown]
# ## Imports and steps

# %%
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from imet_utils.budget import Budget
from imet_utils.config import TTA_VIEWS, SubmitConfig
from imet_utils.console import log, warn
from imet_utils.data import Competition, read_competition
from imet_utils.decision import apply_rule, choose_rule
from imet_utils.devices import describe_run, inference_strategy, log_run
from imet_utils.ensemble import (
    TestPredictions,
    blend,
    fallback_labels,
    fit_weights,
    label_prior,
    load_test_predictions,
    load_train_output,
    model_families,
    oof_predictions,
    oof_view_mismatches,
    predict_ensemble,
)
from imet_utils.images import cache_for_model
from imet_utils.metrics import f2_by_group, search_threshold, threshold_grid
from imet_utils.outputs import (
    CONFIG_FILE,
    DECISION_FILE,
    SAMPLE_PREDICTIONS_PLOT,
    SUBMISSION_FILE,
    TEST_PROBS_FILE,
    THRESHOLD_PLOT,
)
from imet_utils.paths import KagglePaths, find_competition_dir, find_kernel_output, find_kernel_outputs
from imet_utils.plots import plot_sample_predictions, plot_threshold_curve, show
from imet_utils.prediction import Throughput
from imet_utils.run_status import input_status, write_run_status
from imet_utils.stacking import SecondLevel, choose_second_level
from imet_utils.startup import start_kernel
from imet_utils.submission import format_labels, write_submission


def load_models(config: SubmitConfig, paths) -> list:
    """The train outputs attached as input, grouped into model families (per-fold kernels of one model join)."""
    outputs = [load_train_output(d) for d in find_kernel_outputs(paths, config.train_kernels, CONFIG_FILE)]
    for out in outputs:
        log(f"train output {out.root}: {out.config.model} at {out.config.image_size}px, folds {out.folds}")
    families = model_families(outputs)
    if config.ensemble_weights is not None and len(config.ensemble_weights) != len(families):
        raise ValueError(
            f"ensemble_weights has {len(config.ensemble_weights)} values for {len(families)} "
            f"model families: {[f[0].config.model for f in families]}"
        )
    return families


def reused_predictions(config: SubmitConfig, paths: KagglePaths, comp: Competition):
    """The test probabilities of an earlier run named by ``reuse_predictions`` (None if unset)."""
    if not config.reuse_predictions:
        return None
    where = Path(config.reuse_predictions)
    if not where.exists():  # not a path: a kernel's output attached as input
        where = find_kernel_output(paths, config.reuse_predictions, TEST_PROBS_FILE)
    saved = load_test_predictions(where, comp.test_ids["id"], comp.labels.n_classes)
    log(
        f"reusing test predictions from {where} ({int(saved.good.sum())} images, models {saved.models}); "
        f"no image is predicted again"
    )
    return saved


def blend_oof(config: SubmitConfig, comp: Competition, families: list, saved) -> tuple:
    """OOF truth and blended probabilities; blend weights from config, the reused run, or fitted on OOF."""
    for message in oof_view_mismatches(families, config.tta_views or TTA_VIEWS[: config.tta]):
        warn(message)
    ids, stacks, folds = oof_predictions(families, list(comp.train["id"]))
    y = comp.targets_for(ids)
    if config.ensemble_weights:
        weights = config.ensemble_weights
    elif saved is not None:
        weights = saved.weights  # the reused probabilities were blended with these
    else:
        weights = fit_weights(y, stacks)
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    log(f"OOF of {len(ids)} images from {len(families)} model famil(ies); weights {np.round(weights, 3).tolist()}")
    return ids, y, blend(stacks, weights), folds, weights


def choose_first_level(config: SubmitConfig, comp: Competition, oof: tuple) -> dict:
    """The decision rule, chosen on out-of-fold predictions by cross-fitting; never hard-coded."""
    _, y, probs, folds, _ = oof
    return choose_rule(
        y,
        probs,
        folds,
        comp.labels.group_index(),
        grid=threshold_grid(*config.threshold_grid),
        rules=config.decision_rules,
        min_labels=config.min_labels,
        max_labels=config.max_labels,
        log=log,
    )


def second_level(config: SubmitConfig, comp: Competition, oof: tuple, decision: dict) -> tuple:
    """The second level, cross-fitted on OOF; when it beats the first level's rules, its rule (chosen on its
    cross-fitted probabilities) replaces theirs, and theirs move to ``first_level``. Returns the decision, the
    second level (None if not chosen) and the OOF probabilities the decision applies to."""
    _, y, probs, folds, _ = oof
    if not config.second_level:
        return decision, None, probs
    stack = choose_second_level(
        y,
        probs,
        folds,
        comp.labels.group_index(),
        first=decision,
        grid=threshold_grid(*config.threshold_grid),
        rules=config.decision_rules,
        min_labels=config.min_labels,
        max_labels=config.max_labels,
        log=log,
    )
    decision["second_level"] = stack.entry
    if stack.level is None:
        return decision, None, probs
    keys = ("chosen", "chosen_because", "params", "oof_f2", "oof_f2_in_sample")  # the top level: the decision applied
    decision["first_level"] = {k: decision[k] for k in keys}
    decision.update({k: stack.rule[k] for k in keys})
    return decision, stack.level, stack.probs


def record_decision(
    config: SubmitConfig, comp: Competition, families: list, oof: tuple, decision: dict, probs, out: Path
) -> None:
    """decision.json (with the ensemble and the OOF F2 of each group), the threshold curve and sample plots."""
    ids, y, _, _, weights = oof
    groups = comp.labels.group_index()
    decision["ensemble"] = [
        {"model": f[0].config.model, "kernels": [o.root.name for o in f], "weight": float(w)}
        for f, w in zip(families, weights)
    ]
    pred = apply_rule(decision["params"], probs, groups)
    decision["oof_f2_by_group"] = f2_by_group(y, pred, groups)
    log(
        f"decision on {len(ids)} OOF images: {decision['chosen']} (cross-fitted OOF F2 "
        f"{decision['oof_f2'][decision['chosen']]:.4f})"
    )
    log(
        "OOF F2 by group: "
        + ", ".join(f"{g} {'no labels' if f is None else f'{f:.4f}'}" for g, f in decision["oof_f2_by_group"].items())
    )
    grid = threshold_grid(*config.threshold_grid)
    _, _, scores = search_threshold(y, probs, grid, min_labels=config.min_labels, max_labels=config.max_labels)
    plot_threshold_curve(grid, scores, out / THRESHOLD_PLOT, title=f"OOF F2 ({len(ids)} images)")
    plot_sample_predictions(comp, ids, y, pred, out / SAMPLE_PREDICTIONS_PLOT)
    (out / DECISION_FILE).write_text(json.dumps(decision, indent=2) + "\n")


def decided_probs(test: TestPredictions, level: SecondLevel) -> TestPredictions:
    """The probabilities the decision applies to: the second level's over the blend, if it was chosen."""
    return test if level is None else dataclasses.replace(test, probs=level.predict(test.probs))


def cache_test_images(config: SubmitConfig, comp: Competition, families: list, scratch: Path) -> tuple:
    """Each family's cached test images (one cache per image size), and the mask of readable images."""
    caches = []
    for family in families:
        caches.append(
            cache_for_model(
                comp.test_ids["id"],
                comp.test_dir,
                split="test",
                model_config=family[0].config,
                root=Path(config.cache_dir or scratch),
                workers=config.workers,
            )
        )
    good = caches[0].good_mask()  # the same for every size: a bad file is bad at any size
    for img_id, reason in caches[0].bad.items():
        warn(f"test image {img_id} unreadable, it gets the fallback labels: {reason}")
    return caches, good


def predict_test(
    config: SubmitConfig, comp: Competition, families: list, caches: list, good, weights, budget: Budget, *, meters
) -> TestPredictions:
    """Blended probabilities of the readable test images: every fold of every family, with TTA, on every GPU.
    ``meters`` (one ``Throughput`` per family) add up what each family predicted and its seconds."""
    views = config.tta_views or TTA_VIEWS[: config.tta]
    n_models = sum(len(o.folds) for f in families for o in f)
    strategy = inference_strategy()
    stacks = []
    for family, cached, meter in zip(families, caches, meters):
        share = sum(len(o.folds) for o in family) / n_models  # each family's share of the time left
        stacks.append(
            predict_ensemble(
                family,
                [p for p in cached.paths if p],
                views=views,
                batch_size=config.batch_size,
                workers=config.workers,
                seconds_left=budget.left() * share,
                strategy=strategy,
                meter=meter,
                on_gpu=bool(tf.config.list_logical_devices("GPU")),  # a CPU session predicts with float32 exports
            )
        )
    return TestPredictions(
        ids=comp.test_ids["id"].to_numpy(dtype=str),
        probs=blend(stacks, weights),
        good=good,
        weights=np.asarray(weights),
        models=[f[0].config.model for f in families],
    )


def predicted_throughput(families: list, meters: list, comp: Competition, stages) -> dict:
    """What this card measured, for run_status.json and ``--plan``: each model family's image views per second
    (one view of one image through one fold model), the test cache's images per second."""
    replicas = max(1, len(tf.config.list_logical_devices("GPU")))  # inference_strategy's
    measured = describe_run(replicas)  # card, replicas, versions; the exports, not a policy, set the precision
    measured.pop("policy")
    measured["exports"] = "as trained" if tf.config.list_logical_devices("GPU") else "float32 copies (CPU)"
    rows = [
        {"model": f[0].config.model, "image_size": f[0].config.image_size, "infer_ips": round(m.ips, 1)}
        for f, m in zip(families, meters)
        if m.ips
    ]
    if len(rows) == 1:
        measured.update(rows[0])
    elif rows:
        measured["families"] = rows
    if stages.seconds.get("test_cache"):
        measured["cache_ips"] = round(len(comp.test_ids) / stages.seconds["test_cache"], 1)
    return measured


def make_submission(config: SubmitConfig, comp: Competition, decision: dict, test: TestPredictions, out: Path) -> Path:
    pred = np.tile(fallback_labels(label_prior(comp.targets()), config.fallback_top_k), (len(comp.test_ids), 1))
    pred[test.good] = apply_rule(decision["params"], test.probs, comp.labels.group_index())
    sub = pd.DataFrame({"id": comp.test_ids["id"], "attribute_ids": format_labels(pred)})
    path = write_submission(sub, out / SUBMISSION_FILE, sample_ids=comp.test_ids["id"], n_classes=comp.labels.n_classes)
    log(f"wrote {path}: {len(sub)} rows, {pred.sum(1).mean():.2f} labels per image")
    return path


# %% [markdown]
# ## Competition data and the train kernels' output

# %%
config, budget, stages, paths = start_kernel(SubmitConfig, CONFIG)  # the budget counts from the process start
out = paths.working
log_run(max(1, len(tf.config.list_logical_devices("GPU"))))  # card, TF/Keras/CUDA/cuDNN versions: what ran
stages.done("setup")
comp = read_competition(find_competition_dir(paths, config.competition))
families = load_models(config, paths)
# what each train output read says of its run (content hash, end time), for run_status.json
inputs = {k: input_status(find_kernel_output(paths, k, CONFIG_FILE), k) for k in config.train_kernels}
saved = reused_predictions(config, paths, comp)
stages.done("csv")

# %% [markdown]
# ## Blend weights and decision rule, chosen on out-of-fold predictions

# %%
oof = blend_oof(config, comp, families, saved)
stages.done("oof")
decision = choose_first_level(config, comp, oof)
stages.done("decision")
decision, level, decided = second_level(config, comp, oof, decision)
stages.done("second_level")
record_decision(config, comp, families, oof, decision, decided, out)
stages.done("decision_files")
show(out / THRESHOLD_PLOT)
show(out / SAMPLE_PREDICTIONS_PLOT)

# %% [markdown]
# ## Test predictions: every fold, with TTA, saved before any label is decided

# %%
meters = [Throughput() for _ in families]  # image views predicted and their seconds, per model family
if saved is None:
    caches, good = cache_test_images(config, comp, families, paths.scratch)
    stages.done("test_cache")
    test = predict_test(config, comp, families, caches, good, oof[-1], budget, meters=meters)
    log(
        f"saved the test probabilities: {test.save(out / TEST_PROBS_FILE)} "
        f"(rerun with reuse_predictions to re-decide without predicting)"
    )
else:
    test = saved
stages.done("predict")

# %% [markdown]
# ## submission.csv

# %%
make_submission(config, comp, decision, decided_probs(test, level), out)
stages.done("submission")
write_run_status(
    out,
    ok=True,
    kernel="submit",
    stages=stages.seconds,
    content_hash=CONTENT_HASH,
    inputs=inputs,
    **predicted_throughput(families, meters, comp, stages),
)  # the last act: a crash never writes it
