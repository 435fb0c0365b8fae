"""Fine-tuning on cached features, for CPUs: the frozen lower blocks of a split backbone run once over every train
image, and each fold trains only the blocks above them and the head.

With ``feature_cache`` set, the model is built split (``create_model(split_block=k)``: the backbone is the nested
models ``lower``, blocks below ``k``, and ``upper``). Nothing below ``k`` trains, so its output for a given view of
an image is the same in every fold and every epoch: ``cache_features`` computes it once per train image and
``feature_views`` view, before the folds, into a scratch file (reused by a rerun with the same images, model,
size, split and views). Each fold then trains ``upper`` and the head on those features, drawing one cached view
per image per epoch (the augmentation); a head-only warm-up trains the head on ``upper``'s pooled output, computed
once per fold. Validation and the saved OOF use the cached features of the views the submit kernel predicts test
images with (the first ``oof_tta`` of ``TTA_VIEWS``): the same numbers as the full model on those views. The fold
writes what ``training.train_fold`` writes, and exports the full model on uint8 images, so the submit kernel
can't tell the paths apart.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from imet_utils.budget import Budget
from imet_utils.config import TTA_VIEWS, TrainConfig
from imet_utils.console import log, progress
from imet_utils.devices import training_lr
from imet_utils.losses import make_loss
from imet_utils.metrics import search_threshold, threshold_grid
from imet_utils.models import backbone_layer, create_model
from imet_utils.outputs import BEST_WEIGHTS, LAST_CHECKPOINT, save_oof
from imet_utils.pipeline import views_dataset
from imet_utils.training import PAUSE_REASON, FoldState, _export, _keep_best, start_fold, validation_loss

FEATURES_FOLDER = "features"  # under the scratch folder: never saved as output
HEAD_LAYERS = ("head_dense", "logits")  # the trained layers after the backbone (GAP and dropout have no weights)


def split_model(config: TrainConfig, n_classes: int, *, weights: str | None = None) -> keras.Model:
    """The full model of a cached-feature run, built split at ``config.split_block`` (``weights``: the config's
    unless given), with the BatchNorm layers of the trained blocks frozen if ``config.freeze_bn``."""
    model = create_model(
        config.model,
        n_classes,
        image_size=config.image_size,
        weights=config.weights if weights is None else weights,
        dense_units=config.dense_units,
        dropout=config.dropout,
        bn_momentum=config.bn_momentum,
        split_block=config.split_block,
    )
    lower, upper = _parts(model)
    lower.trainable = False
    if config.freeze_bn:
        for layer in _layers(upper):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras 3: a frozen BatchNormalization runs in inference mode
    return model


def _parts(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    backbone = backbone_layer(model)
    return backbone.get_layer("lower"), backbone.get_layer("upper")


def _layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def feature_extractor(model: keras.Model) -> keras.Model:
    """uint8 images -> the lower blocks' output: the layers of ``model`` before the split, shared with it."""
    image = keras.Input(model.input.shape[1:], dtype="uint8")
    x = image
    for layer in model.layers[1:]:
        if layer is backbone_layer(model):
            return keras.Model(image, _parts(model)[0](x, training=False))
        x = layer(x)
    raise ValueError("the model has no backbone")


def _upper_features(model: keras.Model, x, *, training):
    """The pooled output of the blocks above the split."""
    return model.get_layer("gap")(_parts(model)[1](x, training=training))


def _head(model: keras.Model, pooled, *, training):
    x = model.get_layer("head_dense")(pooled)
    x = model.get_layer("head_dropout")(x, training=training)
    return model.get_layer("probs")(model.get_layer("logits")(x))


def _cache_key(config: TrainConfig, paths: np.ndarray) -> str:
    text = "\n".join([config.model, str(config.weights), str(config.image_size), str(config.split_block)])
    text += "\n" + "\n".join(config.feature_views) + "\n" + "\n".join(map(str, paths))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_features(config: TrainConfig, paths: np.ndarray, *, n_classes: int, scratch: Path) -> np.ndarray:
    """The lower blocks' output for every image of ``paths`` and view of ``config.feature_views``, computed once
    (a float32 array (views, images, h, w, c), memory-mapped from a scratch file that a rerun with the same images
    and settings reuses).

    Args:
        config: the run's config (``feature_cache`` set).
        paths: the train images (the JPEG cache), in the order the folds index them.
        n_classes: the model's outputs (the head is built, unused, to build the same model as the folds).
        scratch: a folder not saved as output.
    """
    folder = Path(config.cache_dir or scratch) / FEATURES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config.model}-{config.image_size}px-split{config.split_block}-{_cache_key(config, paths)}.npy"
    if path.is_file():
        log(f"features: reusing {path}")
        return np.load(path, mmap_mode="r")
    start = time.time()
    model = split_model(config, n_classes)
    extract = feature_extractor(model)
    views = tuple(config.feature_views)
    shape = tuple(int(d) for d in extract.output.shape[1:])
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(views), len(paths), *shape))
    batch = config.batch_size * 2
    spec = tf.TensorSpec((None, len(views), config.image_size, config.image_size, 3), tf.uint8)
    step = tf.function(  # one trace for every batch size, the last one's too
        lambda x: extract(tf.reshape(x, (-1, *spec.shape[2:])), training=False), input_signature=[spec]
    )
    ds = views_dataset(paths, size=config.image_size, batch_size=batch, views=views, workers=config.workers)
    i = 0
    for images in progress(ds, total=-(-len(paths) // batch), desc="features"):
        n = int(images.shape[0])
        feats = step(images).numpy().reshape(n, len(views), *shape)
        out[:, i : i + n] = feats.transpose(1, 0, *range(2, feats.ndim))
        i += n
    out.flush()
    del out
    os.replace(tmp, path)
    log(
        f"features: {len(paths)} images x {len(views)} views {views} through the frozen blocks below "
        f"{config.split_block} -> {shape} each, {time.time() - start:.0f}s ({path})"
    )
    return np.load(path, mmap_mode="r")


def _factor(config: TrainConfig, epoch: int) -> float:
    """The learning rate's share at ``epoch`` (0-based) under ``config.lr_schedule``, as ``lr_callbacks`` sets it."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
    return 1.0


class _Trainer:
    """One fold's steps on cached features: the head alone on pooled features, or the upper blocks and the head."""

    def __init__(self, model: keras.Model, config: TrainConfig):
        self.model, self.config = model, config
        self.loss = make_loss(config)
        self.head_vars = [v for name in HEAD_LAYERS for v in model.get_layer(name).trainable_variables]
        self.upper_vars = _parts(model)[1].trainable_variables
        # the run's rates: lr (and backbone_lr with it) scaled for the global batch, as train_fold's (effective_lr)
        self.head_lr = training_lr(config)
        self.upper_lr = (config.backbone_lr or config.lr) * self.head_lr / config.lr
        self.head_opt = keras.optimizers.Adam(self.head_lr)
        self.upper_opt = keras.optimizers.Adam(self.upper_lr)
        self.head_opt.build(self.head_vars)
        self.upper_opt.build(self.upper_vars)
        spec = tf.TensorSpec((None, *_parts(model)[0].output.shape[1:]), tf.float32)  # any batch: one trace
        self.head_step = tf.function(self._head_step)
        self.full_step = tf.function(self._full_step)
        self.pool = tf.function(lambda x: _upper_features(model, x, training=False), input_signature=[spec])
        self.predict = tf.function(
            lambda x: _head(model, _upper_features(model, x, training=False), training=False), input_signature=[spec]
        )

    def _head_step(self, pooled, y):
        with tf.GradientTape() as tape:
            loss = self.loss(y, _head(self.model, pooled, training=True))
        self.head_opt.apply_gradients(zip(tape.gradient(loss, self.head_vars), self.head_vars))
        return loss

    def _full_step(self, x, y):
        with tf.GradientTape() as tape:
            loss = self.loss(y, _head(self.model, _upper_features(self.model, x, training=True), training=True))
        grads = tape.gradient(loss, [*self.head_vars, *self.upper_vars])
        n = len(self.head_vars)
        self.head_opt.apply_gradients(zip(grads[:n], self.head_vars))
        self.upper_opt.apply_gradients(zip(grads[n:], self.upper_vars))
        return loss

    def set_epoch(self, epoch: int) -> None:
        share = _factor(self.config, epoch)
        self.head_opt.learning_rate.assign(self.head_lr * share)
        self.upper_opt.learning_rate.assign(self.upper_lr * share)

    def pooled(self, feats: np.ndarray, batch: int) -> np.ndarray:
        return np.concatenate([self.pool(feats[i : i + batch]).numpy() for i in range(0, len(feats), batch)])

    def probs(self, feats: np.ndarray, rows: np.ndarray, views: list[int], batch: int) -> np.ndarray:
        """The mean probability over ``views`` (indices into the cache) for ``rows``: the full model on those views."""
        out = 0.0
        for v in views:
            out = out + np.concatenate(
                [self.predict(np.asarray(feats[v, rows[i : i + batch]])).numpy() for i in range(0, len(rows), batch)]
            )
        return (out / len(views)).astype(np.float32)


def train_cached_fold(
    config: TrainConfig,
    fold: int,
    *,
    ids: np.ndarray,
    features: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    out: Path,
    budget: Budget,
    folds_after: int = 0,
) -> FoldState:
    """Trains (or resumes) one fold on cached features and exports its best full model; ``training.train_fold``'s
    counterpart, writing the same files.

    Args:
        config: the run's config (``feature_cache`` set).
        fold: which fold is the validation part.
        ids, targets, folds: the usable train images, in the order of ``features``' second axis.
        features: ``cache_features``' array.
        out: the kernel's output folder.
        budget: stop cleanly before the session limit.
        folds_after: folds still to train after this one (for the time-left estimate).

    Returns:
        The fold's final state.
    """
    d, state = start_fold(out, fold)
    if state.finished:
        return state
    model, state = fit_cached_fold(
        config,
        fold,
        ids=ids,
        features=features,
        targets=targets,
        folds=folds,
        d=d,
        state=state,
        budget=budget,
        folds_after=folds_after,
    )
    if model is not None:
        _export(model, fold, d, state)
    return state


def fit_cached_fold(
    config: TrainConfig,
    fold: int,
    *,
    ids: np.ndarray,
    features: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    d: Path,
    state: FoldState,
    budget: Budget,
    folds_after: int = 0,
) -> tuple[keras.Model | None, FoldState]:
    """The epochs of ``train_cached_fold`` left in ``state``, in the fold folder ``d``: (the model with its best
    epoch's weights, or None if there is none to export (paused or failed), and the state)."""
    model = split_model(config, targets.shape[1])
    if state.epochs_done and (d / LAST_CHECKPOINT).is_file():
        log(f"fold {fold}: resuming after epoch {state.epochs_done} (weights; the optimiser starts afresh)")
        model.load_weights(d / LAST_CHECKPOINT)
    else:
        state = FoldState()
    tr, va = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    oof_views = list(TTA_VIEWS[: config.oof_tta])
    oof_index = [config.feature_views.index(v) for v in oof_views]
    trainer = _Trainer(model, config)
    grid = threshold_grid(*config.threshold_grid)
    rng = np.random.default_rng(config.seed + fold + 1000 * state.epochs_done)
    batch = config.batch_size
    n_views = len(config.feature_views)
    pooled = None
    if state.epochs_done < config.epochs and not state.stopped_reason:
        log(f"fold {fold}: {len(tr)} train / {len(va)} valid images on cached features, batch {batch}")
    for epoch in range(state.epochs_done, config.epochs):
        if state.stopped_reason:
            break
        t0 = time.time()
        trainer.set_epoch(epoch)
        order = rng.permutation(tr)
        view = rng.integers(0, n_views, len(order))
        head_only = epoch < config.warmup_epochs
        if head_only and pooled is None:  # the upper blocks are frozen: their pooled output is fixed
            pooled = np.stack([trainer.pooled(np.asarray(features[v, tr]), batch * 2) for v in range(n_views)])
            position = {int(i): k for k, i in enumerate(tr)}
        losses = []
        for i in range(0, len(order) - batch + 1, batch):  # full batches: BatchNorm
            rows, views = order[i : i + batch], view[i : i + batch]
            y = targets[rows].astype(np.float32)
            if head_only:
                x = pooled[views, [position[int(r)] for r in rows]]
                losses.append(float(trainer.head_step(x, y)))
            else:
                losses.append(float(trainer.full_step(np.asarray(features[views, rows]), y)))
        loss = float(np.mean(losses))
        if not math.isfinite(loss):
            state.stopped_reason = f"loss became {loss} in epoch {epoch + 1}"
            state.save(d)
            break
        probs = trainer.probs(features, va, oof_index, batch * 2)
        t, f2, _ = search_threshold(
            targets[va], probs, grid, min_labels=config.min_labels, max_labels=config.max_labels
        )
        seconds = time.time() - t0
        state.history.append(
            {
                "epoch": epoch + 1,
                "loss": loss,
                "val_loss": validation_loss(config, targets[va], probs),
                "val_f2": f2,
                "threshold": t,
                "seconds": round(seconds, 1),
            }
        )
        if f2 > state.best_f2:
            state.best_f2, state.best_epoch, state.best_threshold = f2, epoch + 1, t
            model.save_weights(d / BEST_WEIGHTS)
            save_oof(d, ids[va], probs, oof_views)
        model.save(d / LAST_CHECKPOINT)
        state.epochs_done = epoch + 1
        state.save(d)
        left = config.epochs - epoch - 1
        log(
            f"fold {fold} epoch {epoch + 1}/{config.epochs}{' (head)' if head_only else ''}: loss {loss:.4f} "
            f"val_loss {state.history[-1]['val_loss']:.4f} val F2 {f2:.4f} @ {t:.2f} (best {state.best_f2:.4f}) "
            f"{seconds:.0f}s; left: fold {seconds * left / 60:.1f} min, "
            f"all folds {seconds * (left + config.epochs * folds_after) / 60:.1f} min"
        )
        if epoch + 1 == config.warmup_epochs:
            log(f"fold {fold}: head warm-up done; training the blocks above {config.split_block} and the head")
        if left and not budget.fits(seconds * 1.1):
            state.stopped_reason = (
                f"{PAUSE_REASON}: {budget.left() / 60:.0f} min left, an epoch takes {seconds / 60:.1f}"
            )
    if not _keep_best(fold, d, state):
        return None, state
    model.load_weights(d / BEST_WEIGHTS)
    return model, state


def rehearse_cached(config: TrainConfig, n_classes: int, *, steps: int = 3) -> tuple[keras.Model, float, float]:
    """The first-minute rehearsal of a ``feature_cache`` run: the split model, a head step and a full step on a
    dummy batch of features, each timed over ``steps``, and a prediction of the OOF's views.

    Returns:
        (the model, training images/s of the full step, predicted image views/s).
    """
    model = split_model(config, n_classes)
    shape = tuple(int(d) for d in _parts(model)[0].output.shape[1:])
    rng = np.random.default_rng(0)
    x = rng.random((config.batch_size, *shape), dtype=np.float32)
    y = (rng.random((config.batch_size, n_classes)) < 0.05).astype(np.float32)
    trainer = _Trainer(model, config)
    trainer.head_step(trainer.pool(x), y)
    trainer.full_step(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.full_step(x, y)
    train_ips = steps * len(x) / (time.perf_counter() - start)
    views = np.stack([x] * config.oof_tta)
    trainer.probs(views, np.arange(len(x)), list(range(config.oof_tta)), len(x))
    start = time.perf_counter()
    probs = trainer.probs(views, np.arange(len(x)), list(range(config.oof_tta)), len(x))
    if not np.isfinite(probs).all() or probs.shape != (len(x), n_classes):
        raise RuntimeError(f"rehearsal: the prediction on cached features gave {probs.shape}, not probabilities")
    return model, train_ips, probs.size / n_classes * config.oof_tta / (time.perf_counter() - start)
