"""Offline inference: every fold of every train output, TTA, ensembling, and the saved test probabilities.

Runs with TensorFlow, numpy and pandas alone: models are TF SavedModels, views
are TF ops. Image size and classes come from each train output's config.json.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from imet_utils.config import TrainConfig, keys_where, load_train_config, to_dict
from imet_utils.console import log, warn
from imet_utils.outputs import (
    CONFIG_FILE,
    MODEL_DIR,
    MODEL_F32_DIR,
    SAVED_MODEL_FILE,
    TEST_PROBS_FILE,
    fold_dir,
    oof_views,
    read_oof,
)
from imet_utils.prediction import Throughput, load_for_inference, predict_views


@dataclasses.dataclass
class TrainOutput:
    """One train kernel's output folder and what it trained."""

    root: Path
    config: TrainConfig
    folds: list[int]

    @property
    def model_dirs(self) -> list[Path]:
        """Each fold's export as trained (16 bits under mixed precision: what a GPU runs fastest)."""
        return [fold_dir(self.root, k) / MODEL_DIR for k in self.folds]

    def model_dirs_for(self, *, on_gpu: bool) -> list[Path]:
        """The exports a session predicts with: on a GPU, ``model_dirs``; on a CPU, each fold's float32 copy
        where the training wrote one (a CPU runs float16 about 10x slower), else its ``model``."""
        if on_gpu:
            return self.model_dirs
        f32 = [d.parent / MODEL_F32_DIR for d in self.model_dirs]
        return [c if (c / SAVED_MODEL_FILE).is_file() else d for c, d in zip(f32, self.model_dirs)]


def load_train_output(root: Path) -> TrainOutput:
    """Reads a train output; raises if it holds no finished fold."""
    root = Path(root)
    config = load_train_config(root / CONFIG_FILE)
    folds = [k for k in range(config.n_folds) if (fold_dir(root, k) / MODEL_DIR / SAVED_MODEL_FILE).is_file()]
    if not folds:
        raise FileNotFoundError(f"{root}: no finished fold (no fold*/{MODEL_DIR}/{SAVED_MODEL_FILE})")
    missing = sorted(set(config.folds) - set(folds))
    if missing:
        warn(f"{root}: folds {missing} were configured but did not finish; ensembling folds {folds}")
    return TrainOutput(root=root, config=config, folds=folds)


RUN_KEYS_IGNORED = keys_where(TrainConfig, "run_only")  # differ within one model family


def _family(out: TrainOutput) -> str:
    """Outputs that differ only in which folds they trained (``--split-folds``) are one model family."""
    return json.dumps({k: v for k, v in to_dict(out.config).items() if k not in RUN_KEYS_IGNORED}, sort_keys=True)


def model_families(outputs: Sequence[TrainOutput]) -> list[list[TrainOutput]]:
    """Groups train outputs into model families: per-fold kernels of one model join, other models stay apart."""
    families: dict[str, list[TrainOutput]] = {}
    for out in outputs:
        families.setdefault(_family(out), []).append(out)
    return list(families.values())


def oof_predictions(families: Sequence[Sequence[TrainOutput]], train_ids: Sequence[str]) -> tuple:
    """Out-of-fold probabilities of each model family, for the ids every family predicted.

    Returns:
        (ids, probs, folds): ids in ``train_ids`` order; one (n, classes) array per family; each id's
        fold in the first family.
    """
    frames, fold_of = [], None
    for family in families:
        parts = [read_oof(out.root, out.config.n_folds) for out in family]
        oof = pd.concat(parts, ignore_index=True).drop_duplicates("id").set_index("id")
        frames.append(oof["row"])
        fold_of = oof["fold"] if fold_of is None else fold_of
    common = [i for i in train_ids if all(i in f.index for f in frames)]
    if not common:
        raise ValueError("no out-of-fold predictions to choose the decision rule on")
    return common, [np.stack(f.loc[common].to_numpy()) for f in frames], fold_of.loc[common].to_numpy()


def oof_view_mismatches(families: Sequence[Sequence[TrainOutput]], views: Sequence[str]) -> list[str]:
    """A warning for each train output whose saved OOF averages other views than the test images get (its
    ``oof_tta`` differs from the submit kernel's ``tta``): the decision would be fitted on other probabilities
    than those it is applied to."""
    messages = []
    for out in (o for family in families for o in family):
        seen = sorted(set(oof_views(out.root, out.config.n_folds)))
        if seen != [tuple(views)]:
            messages.append(
                f"{out.root}: its OOF averages the views {seen}, the test images get {list(views)}: the "
                f"decision is fitted on other probabilities than it is applied to; train with "
                f"oof_tta={len(views)} (this kernel's tta)"
            )
    return messages


def fit_weights(y: np.ndarray, stacks: Sequence[np.ndarray], *, max_rows: int = 20000, seed: int = 0) -> np.ndarray:
    """Blend weights (non-negative, summing to 1) minimising the OOF binary cross-entropy of the blend."""
    if len(stacks) == 1:
        return np.ones(1)
    from scipy.optimize import minimize

    rows = np.random.default_rng(seed).permutation(len(y))[:max_rows]
    p = np.stack([np.clip(s[rows], 1e-6, 1 - 1e-6) for s in stacks]).astype(np.float64)
    t = y[rows].astype(np.float64)

    def loss(z):
        w = np.exp(z - z.max())
        w /= w.sum()
        q = np.tensordot(w, p, axes=1)
        return -np.mean(t * np.log(q) + (1 - t) * np.log(1 - q))

    z = minimize(loss, np.zeros(len(stacks)), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-7}).x
    w = np.exp(z - z.max())
    return w / w.sum()


def blend(stacks: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.stack(stacks), axes=1).astype(np.float32)


def plan_prediction(
    *, n_images: int, n_models: int, tta: int, seconds_per_view: float, seconds_left: float
) -> tuple[int, int]:
    """How many models and TTA views fit the time left: views are dropped first, then models.

    Args:
        n_images: images to predict.
        n_models: fold models available.
        tta: views asked for.
        seconds_per_view: measured time of one model on one view of one image.
        seconds_left: the budget.

    Returns:
        (models, views) to use; at least (1, 1), which is always run.
    """

    def cost(m: int, v: int) -> float:
        return m * v * n_images * seconds_per_view

    views = tta
    while views > 1 and cost(n_models, views) > seconds_left:
        views -= 1
    models = n_models
    while models > 1 and cost(models, views) > seconds_left:
        models -= 1
    return models, views


def predict_ensemble(
    outputs: Sequence[TrainOutput],
    paths: Sequence[str],
    *,
    views: Sequence[str],
    batch_size: int,
    workers: int = 0,
    seconds_left: float | None = None,
    strategy: tf.distribute.Strategy | None = None,
    meter: Throughput | None = None,
    on_gpu: bool | None = None,
) -> np.ndarray:
    """Mean over every fold model of every output and over the TTA ``views``.

    With ``seconds_left``, the first model is timed on a few batches and the TTA count, then the
    number of models, is lowered if the whole prediction would not fit; what is dropped is logged.
    Each model is loaded under ``strategy`` (default: the current one) and predicts on all its replicas, with
    ``batch_size`` images per replica; ``meter`` adds up the image views predicted and their seconds.
    ``on_gpu`` (default: whether TF sees a GPU) picks each fold's export: as trained on a GPU, its float32 copy
    on a CPU (``TrainOutput.model_dirs_for``). One fold model is held at a time; the one timed for the budget
    is the first one predicted with, not loaded twice.
    """
    strategy = strategy or tf.distribute.get_strategy()
    batch_size *= strategy.num_replicas_in_sync
    if on_gpu is None:
        on_gpu = bool(tf.config.list_logical_devices("GPU"))
    models = [(out, d) for out in outputs for d in out.model_dirs_for(on_gpu=on_gpu)]
    log(f"predicting with the {'as-trained' if on_gpu else 'float32 (CPU)'} export of {len(models)} fold model(s)")
    views = tuple(views)
    first = None  # the model the budget was timed on, loaded once
    if seconds_left is not None and len(paths):
        first, models, views = _fit_to_budget(
            models,
            paths,
            views=views,
            batch_size=batch_size,
            workers=workers,
            seconds_left=seconds_left,
            strategy=strategy,
        )
    total = None
    for out, d in models:
        model = first if first is not None else load_for_inference(d, strategy)
        first = None
        total = _add_fold_model(
            total, out, d, model, paths, views=views, batch_size=batch_size, workers=workers, meter=meter
        )
        del model
        gc.collect()  # the fold model goes before the next one loads: one in device memory at a time
    return total / len(models)


def _fit_to_budget(
    models: list[tuple[TrainOutput, Path]],
    paths: Sequence[str],
    *,
    views: tuple[str, ...],
    batch_size: int,
    workers: int,
    seconds_left: float,
    strategy: tf.distribute.Strategy,
) -> tuple:
    """(the first model, loaded; the models and views that fit ``seconds_left``), timed on the first model; the
    plan and drops are logged."""
    loaded = load_for_inference(models[0][1], strategy)
    per_view = _seconds_per_view(loaded, models[0][0], paths, views=views, batch_size=batch_size, workers=workers)
    n_models, n_views = plan_prediction(
        n_images=len(paths),
        n_models=len(models),
        tta=len(views),
        seconds_per_view=per_view,
        seconds_left=seconds_left,
    )
    estimate = per_view * len(paths) * n_models * n_views / 60
    log(
        f"inference plan: {n_models} model(s) x {n_views} view(s) x {len(paths)} images, "
        f"about {estimate:.0f} min ({seconds_left / 60:.0f} min left)"
    )
    if n_views < len(views):
        warn(f"time budget: TTA lowered from {len(views)} to {n_views} views (dropped {list(views[n_views:])})")
    if n_models < len(models):
        dropped = [f"{o.root.name}/{d.parent.name}" for o, d in models[n_models:]]
        warn(f"time budget: {len(models) - n_models} model(s) dropped: {dropped}")
    return loaded, models[:n_models], views[:n_views]


def _seconds_per_view(
    loaded,
    out: TrainOutput,
    paths: Sequence[str],
    *,
    views: tuple[str, ...],
    batch_size: int,
    workers: int,
) -> float:
    """Seconds per image view of one loaded model of ``out``, on up to 4 batches, after a warm-up batch."""
    probe = list(paths[: min(len(paths), 4 * batch_size)])
    predict_views(loaded, probe[:batch_size], size=out.config.image_size, batch_size=batch_size, views=views)
    start = time.time()
    predict_views(loaded, probe, size=out.config.image_size, batch_size=batch_size, views=views, workers=workers)
    return (time.time() - start) / (len(probe) * len(views))


def _add_fold_model(
    total: np.ndarray | None,
    out: TrainOutput,
    d: Path,
    model,
    paths: Sequence[str],
    *,
    views: tuple[str, ...],
    batch_size: int,
    workers: int,
    meter: Throughput | None,
) -> np.ndarray:
    """``total`` plus the probabilities of ``model``, the fold model loaded from ``d`` (their mean over
    ``views``); the model's time is metered and logged."""
    start = time.time()
    probs = predict_views(
        model,
        paths,
        size=out.config.image_size,
        batch_size=batch_size,
        views=views,
        workers=workers,
        desc=f"{out.root.name}/{d.parent.name} x{len(views)} TTA",
    )
    total = probs if total is None else total + probs
    if meter is not None:
        meter.add(len(paths) * len(views), time.time() - start)
    log(
        f"predicted {len(paths)} images with {d.parent.name} of {out.root.name} "
        f"({len(views)} views, {time.time() - start:.0f}s)"
    )
    return total


def label_prior(targets: np.ndarray) -> np.ndarray:
    return targets.mean(axis=0)


def fallback_labels(prior: np.ndarray, k: int) -> np.ndarray:
    """The 0/1 row given to a test image that can't be read: the ``k`` most frequent train labels."""
    row = np.zeros(len(prior), dtype=np.uint8)
    row[np.argsort(-prior, kind="stable")[:k]] = 1
    return row


@dataclasses.dataclass
class TestPredictions:
    """Blended test probabilities as the submit kernel saves them, before any decision is made."""

    ids: np.ndarray  # test ids (str), sample_submission order
    probs: np.ndarray  # (readable images, classes) float32, rows in the order of ids[good]
    good: np.ndarray  # bool per id: readable (the others get the fallback labels)
    weights: np.ndarray  # blend weight of each model family
    models: list[str]  # each family's model name

    def save(self, path: Path) -> Path:
        """Writes ``path`` atomically (a crash mid-write leaves no half file to reuse)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            ids=np.asarray(self.ids, dtype=str),
            probs=self.probs.astype(np.float32),
            good=self.good.astype(bool),
            classes=np.arange(self.probs.shape[1]),
            weights=np.asarray(self.weights, dtype=np.float64),
            models=np.asarray(self.models, dtype=str),
        )
        tmp.replace(path)
        return path


def load_test_predictions(path: Path, test_ids: Sequence[str], n_classes: int) -> TestPredictions:
    """Reads a saved ``test_probs.npz`` (or the folder holding it) for ``test_ids``, in their order.

    Raises:
        ValueError: naming the file and what doesn't match this competition (ids, classes).
    """
    path = Path(path)
    if path.is_dir():
        path = path / TEST_PROBS_FILE
    z = np.load(path)
    ids, probs, good = z["ids"].astype(str), z["probs"], z["good"].astype(bool)
    if probs.shape[1] != n_classes or len(z["classes"]) != n_classes:
        raise ValueError(f"{path}: {probs.shape[1]} classes, the competition has {n_classes}")
    position = pd.Index(ids)
    where = position.get_indexer(list(test_ids))
    if (where < 0).any():
        missing = [i for i, w in zip(test_ids, where) if w < 0]
        raise ValueError(f"{path}: {len(missing)} test id(s) missing, e.g. {missing[:5]}")
    row_of = np.full(len(ids), -1)
    row_of[good] = np.arange(good.sum())
    good_new = good[where]
    return TestPredictions(
        ids=np.asarray(test_ids, dtype=str),
        probs=probs[row_of[where[good_new]]],
        good=good_new,
        weights=z["weights"],
        models=z["models"].astype(str).tolist(),
    )
