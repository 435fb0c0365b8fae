"""Training one fold at a time, with per-epoch validation loss and F2, checkpoints and a time budget.

What each fold writes is described in ``imet_utils.outputs``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from imet_utils.budget import Budget
from imet_utils.config import TTA_VIEWS, TrainConfig
from imet_utils.console import log, warn
from imet_utils.devices import make_optimizer, training_lr, with_scaled_lr, without_multi_replica_jit
from imet_utils.losses import make_loss
from imet_utils.metrics import search_threshold, threshold_grid
from imet_utils.models import backbone_layer, create_model, export_float32_copy, export_for_inference, load_checkpoint
from imet_utils.outputs import (
    BEST_WEIGHTS,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    MODEL_DIR,
    MODEL_F32_DIR,
    STATE_FILE,
    fold_dir,
    save_oof,
)
from imet_utils.pipeline import train_dataset
from imet_utils.prediction import predict_views
from imet_utils.schedules import lr_callbacks

PAUSE_REASON = "time budget"


@dataclasses.dataclass
class FoldState:
    epochs_done: int = 0
    best_f2: float = -1.0
    best_epoch: int = -1
    best_threshold: float = 0.0
    finished: bool = False
    failed: bool = False  # stopped (e.g. NaN loss) with no epoch worth keeping
    stopped_reason: str = ""
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    @property
    def paused(self) -> bool:
        """Stopped by the time budget: a rerun with this output resumes it."""
        return self.stopped_reason.startswith(PAUSE_REASON)

    def epoch_seconds(self) -> float:
        return max((r["seconds"] for r in self.history), default=0.0)

    @classmethod
    def load(cls, d: Path) -> FoldState:
        p = Path(d) / STATE_FILE
        state = cls(**json.loads(p.read_text())) if p.is_file() else cls()
        if state.paused:
            state.stopped_reason = ""  # a new session: try again
        return state

    def save(self, d: Path) -> None:
        tmp = Path(d) / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        os.replace(tmp, Path(d) / STATE_FILE)


class _EpochEnd(keras.callbacks.Callback):
    """Validation loss and F2 (a threshold search, as the 2019 baseline notebook's callback did), best-weights
    keeping, checkpoint and time budget."""

    def __init__(self, *, config, fold, d, state, valid_ids, valid_paths, valid_y, budget, folds_after=0):
        super().__init__()
        self.folds_after = folds_after
        self.config, self.fold, self.d, self.state = config, fold, d, state
        self.valid_ids, self.valid_paths, self.valid_y = valid_ids, valid_paths, valid_y
        self.budget = budget
        self.grid = threshold_grid(*config.threshold_grid)
        self.t0 = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        loss = float(logs.get("loss", float("nan")))
        if not math.isfinite(loss):
            self.state.stopped_reason = f"loss became {loss} in epoch {epoch + 1}"
            self.model.stop_training = True
            self.state.save(self.d)  # the last good checkpoint stays as it was
            return
        probs = predict_views(
            self.model,
            self.valid_paths,
            size=self.config.image_size,
            batch_size=validation_batch(self.config, self.model.distribute_strategy.num_replicas_in_sync),
            workers=self.config.workers,
        )
        t, f2, _ = search_threshold(
            self.valid_y, probs, self.grid, min_labels=self.config.min_labels, max_labels=self.config.max_labels
        )
        val_loss = validation_loss(self.config, self.valid_y, probs)
        seconds = time.time() - self.t0
        row = {
            "epoch": epoch + 1,
            "loss": loss,
            "val_loss": val_loss,
            "val_f2": f2,
            "threshold": t,
            "seconds": round(seconds, 1),
        }
        self.state.history.append(row)
        if f2 > self.state.best_f2:
            self.state.best_f2, self.state.best_epoch, self.state.best_threshold = f2, epoch + 1, t
            self.model.save_weights(self.d / BEST_WEIGHTS)
            save_oof(self.d, self.valid_ids, probs, ("center",))
        self.model.save(self.d / LAST_CHECKPOINT)
        self.state.epochs_done = epoch + 1
        self.state.save(self.d)
        left_epochs = self.config.epochs - epoch - 1
        eta = seconds * left_epochs
        total = eta + seconds * self.config.epochs * self.folds_after
        log(
            f"fold {self.fold} epoch {epoch + 1}/{self.config.epochs}: loss {loss:.4f} val_loss {val_loss:.4f} "
            f"val F2 {f2:.4f} "
            f"@ {t:.2f} (best {self.state.best_f2:.4f}) {seconds:.0f}s; left: fold {eta / 60:.1f} min, "
            f"all folds {total / 60:.1f} min"
        )
        if left_epochs and not self.budget.fits(seconds * 1.1):
            self.state.stopped_reason = (
                f"{PAUSE_REASON}: {self.budget.left() / 60:.0f} min left, an epoch takes {seconds / 60:.1f}"
            )
            self.model.stop_training = True


def validation_loss(config: TrainConfig, y: np.ndarray, probs: np.ndarray, *, rows: int = 4096) -> float:
    """The training loss on the validation predictions the epoch already made (no second pass over the
    images), as the 2019 baseline notebook's val_loss; computed in chunks of ``rows`` to keep memory flat."""
    loss = make_loss(config)
    total = 0.0
    for i in range(0, len(y), rows):
        chunk = slice(i, i + rows)
        total += float(loss(y[chunk].astype(np.float32), probs[chunk])) * len(y[chunk])
    return total / max(1, len(y))


def validation_batch(config: TrainConfig, replicas: int) -> int:
    """Images per prediction batch of validation and of the fold-end OOF (twice the global training batch; the
    OOF's ``oof_tta`` views of each make it ``oof_tta`` times larger in views): the rehearsal runs both."""
    return config.batch_size * 2 * replicas


def _compile(model, config: TrainConfig) -> None:
    """Adam at the run's rate; under mixed_float16, in the loss-scale optimizer that is safe on several replicas
    (``devices.make_optimizer``); call it under the strategy's scope."""
    model.compile(optimizer=make_optimizer(config), loss=make_loss(config), jit_compile=config.jit_compile)


def compiled_model(config: TrainConfig, n_classes: int):
    """The compiled model a fold trains, exactly as configured: the one builder that training and the first-minute
    rehearsal share, so the rehearsal tries what will train. Call it under the strategy's scope."""
    model = create_model(
        config.model,
        n_classes,
        image_size=config.image_size,
        weights=config.weights,
        dense_units=config.dense_units,
        dropout=config.dropout,
        bn_momentum=config.bn_momentum,
        device_augment=config.augment == "device",
        augment_preset=config.augment_preset,
    )
    _compile(model, config)
    return model


def start_fold(out: Path, fold: int) -> tuple[Path, FoldState]:
    """The fold's folder (made if new) and its saved state; a finished fold is logged as skipped."""
    d = fold_dir(out, fold)
    d.mkdir(parents=True, exist_ok=True)
    state = FoldState.load(d)
    if state.finished:
        log(f"fold {fold}: already finished (best F2 {state.best_f2:.4f}), skipped")
    return d, state


def train_fold(
    config: TrainConfig,
    fold: int,
    *,
    ids: np.ndarray,
    paths: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    out: Path,
    strategy: tf.distribute.Strategy,
    budget: Budget,
    transform=None,
    folds_after: int = 0,
) -> FoldState:
    """Trains (or resumes) one fold and exports its best model.

    Args:
        config: the run's config.
        fold: which fold is the validation part.
        ids, paths, targets, folds: usable train images (bad ones already dropped).
        out: the kernel's output folder.
        strategy: from ``setup_strategy``.
        budget: stop cleanly before the session limit.
        transform: numpy augmentation for the train pipeline.
        folds_after: folds still to train after this one (for the time-left estimate).

    Returns:
        The fold's final state.
    """
    d, state = start_fold(out, fold)
    if state.finished:
        return state
    tr, va = folds != fold, folds == fold
    replicas = strategy.num_replicas_in_sync
    config = with_scaled_lr(without_multi_replica_jit(config, replicas), replicas)
    batch = config.batch_size * replicas
    if tr.sum() < batch:
        raise ValueError(
            f"fold {fold}: {tr.sum()} train images, fewer than one global batch of {batch} ({config.batch_size} x "
            f"{replicas} replica(s)): lower batch_size or train on more images"
        )
    model, state = _model_for(config, fold, d, state, n_classes=targets.shape[1], strategy=strategy)
    callback = _EpochEnd(
        config=config,
        fold=fold,
        d=d,
        state=state,
        valid_ids=ids[va],
        valid_paths=paths[va],
        valid_y=targets[va],
        budget=budget,
        folds_after=folds_after,
    )
    if state.epochs_done < config.epochs and not state.stopped_reason:
        log(
            f"fold {fold}: {tr.sum()} train / {va.sum()} valid images, batch {batch} on {replicas} replica(s), "
            f"lr {training_lr(config):.3g}; {tr.sum() % batch} image(s) left out of each epoch (full batches only)"
        )
        ds = _train_data(config, fold, paths[tr], targets[tr], batch=batch, transform=transform)
        schedule = lr_callbacks(dataclasses.replace(config, lr=training_lr(config)))  # from the run's rate
        _fit(model, ds, [callback, *schedule], config=config, fold=fold, state=state, strategy=strategy)
    if not _keep_best(fold, d, state):
        return state
    model.load_weights(d / BEST_WEIGHTS)
    if config.oof_tta > 1:
        _save_tta_oof(model, config, d, ids[va], paths[va])
    _export(model, fold, d, state)
    return state


def _train_data(config: TrainConfig, fold: int, paths: np.ndarray, targets: np.ndarray, *, batch: int, transform):
    """The fold's shuffled, augmented train batches (shuffled by the random seed plus the fold), full batches only:
    a last batch of one image splits [1, 0] over two replicas, and BatchNorm on one image (or none) makes NaN."""
    return train_dataset(
        paths,
        targets,
        size=config.image_size,
        batch_size=batch,
        seed=config.seed + fold,
        transform=transform,
        workers=config.workers,
        mixup_alpha=config.mixup_alpha,
        drop_remainder=True,
    )


def _save_tta_oof(model, config: TrainConfig, d: Path, ids: np.ndarray, paths: np.ndarray) -> None:
    """The OOF the submit kernel decides on, with the views it predicts the test images with."""
    views = TTA_VIEWS[: config.oof_tta]
    save_oof(
        d,
        ids,
        predict_views(
            model,
            paths,
            size=config.image_size,
            batch_size=validation_batch(config, model.distribute_strategy.num_replicas_in_sync),
            views=views,
            workers=config.workers,
        ),
        views,
    )


def _model_for(config: TrainConfig, fold: int, d: Path, state: FoldState, *, n_classes: int, strategy) -> tuple:
    """(model, state): the fold's last checkpoint and its state to resume, or a new compiled model and state."""
    with strategy.scope():
        if state.epochs_done and (d / LAST_CHECKPOINT).is_file():
            log(f"fold {fold}: resuming after epoch {state.epochs_done}")
            return load_checkpoint(config.model, d / LAST_CHECKPOINT), state
        model = compiled_model(config, n_classes)
    return model, FoldState()


def _fit(model, ds, callbacks: list, *, config: TrainConfig, fold: int, state: FoldState, strategy) -> None:
    """The head alone on a frozen backbone for the warm-up epochs left, then the whole model for the rest."""
    if state.epochs_done < config.warmup_epochs:
        with strategy.scope():
            backbone_layer(model).trainable = False
            _compile(model, config)
        model.fit(
            ds,
            epochs=config.warmup_epochs,
            initial_epoch=state.epochs_done,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        log(f"fold {fold}: head warm-up done; training the whole model")
    if not backbone_layer(model).trainable:
        with strategy.scope():
            backbone_layer(model).trainable = True
            _compile(model, config)
    if state.epochs_done < config.epochs and not state.stopped_reason:
        model.fit(
            ds, epochs=config.epochs, initial_epoch=state.epochs_done, callbacks=callbacks, verbose=config.verbose
        )


def _keep_best(fold: int, d: Path, state: FoldState) -> bool:
    """Whether the fold has a best epoch to export; a paused or failed fold saves its state and says why."""
    if state.paused:
        warn(f"fold {fold} paused: {state.stopped_reason}. Rerun with this output attached to resume.")
        state.save(d)
        return False
    if state.stopped_reason:
        warn(f"fold {fold} stopped: {state.stopped_reason}; keeping its best epoch ({state.best_epoch})")
    if state.best_epoch < 1:
        warn(f"fold {fold}: no finished epoch to keep; the fold is left out")
        state.failed = True
        state.save(d)
        return False
    return True


def _export(model, fold: int, d: Path, state: FoldState) -> None:
    """Exports the best model (and, if it computes in 16 bits, a float32 copy for CPU sessions) and the history,
    marks the fold finished and drops the checkpoints."""
    export_for_inference(model, d / MODEL_DIR)
    export_float32_copy(model, d / MODEL_F32_DIR)
    pd.DataFrame(state.history).to_csv(d / HISTORY_FILE, index=False)
    state.finished = True
    state.save(d)
    for name in (LAST_CHECKPOINT, BEST_WEIGHTS):
        (d / name).unlink(missing_ok=True)
    log(f"fold {fold}: done, best val F2 {state.best_f2:.4f} at epoch {state.best_epoch}")
