"""Devices: the distribution strategy and mixed-precision policy, and what XLA can run on."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import tensorflow as tf

from imet_utils.config import TrainConfig
from imet_utils.console import log, warn


def setup_strategy(config: TrainConfig, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """Picks the distribution strategy and the mixed-precision policy.

    TPU -> TPUStrategy with bfloat16; several GPUs (Kaggle's T4 x2) -> MirroredStrategy with float16;
    one GPU -> float16; CPU -> float32. The sigmoid output stays float32 in every case (see models).

    Args:
        config: ``mixed_precision`` switches the 16-bit policies.
        devices: explicit devices to mirror over (tests split the CPU into logical devices).
    """
    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        log("TPU found: TPUStrategy, bfloat16")
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, tf.errors.NotFoundError):
        pass
    gpus = tf.config.list_logical_devices("GPU")
    if gpus and config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    log(f"{len(gpus)} GPU(s); policy {keras.mixed_precision.global_policy().name}")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def inference_strategy() -> tf.distribute.Strategy:
    """The submit kernel's strategy: every GPU (MirroredStrategy over two or more), else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    log(f"{len(gpus)} GPU(s) predict")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def card_name(replicas: int | None = None) -> str:
    """The accelerator and how many replicas run on it, e.g. "Tesla T4 x2" (Kaggle's T4 x2), "CPU x1"."""
    gpus = tf.config.list_physical_devices("GPU")
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    return f"{name} x{replicas or max(1, len(gpus))}"


def without_multi_replica_jit(config: TrainConfig, replicas: int) -> TrainConfig:
    """XLA with more than one replica crashes (LossScaleOptimizer + MirroredStrategy, keras-team/keras#21366),
    so ``jit_compile`` is turned off there, with a warning."""
    if config.jit_compile and replicas > 1:
        warn(f"jit_compile=True crashes with {replicas} replicas (keras-team/keras#21366); training without XLA")
        return dataclasses.replace(config, jit_compile=False)
    return config


def sync_replica_states(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Sets every replica's copy of the model's non-trainable float variables to their mean over the replicas.

    Under MirroredStrategy, Keras 3 updates each replica's BatchNorm moving statistics on that replica's
    share of the batch alone (their aggregation is "none"), so the copies drift apart: a prediction on every
    replica would then use other statistics on each, and a saved model keeps only the first replica's. After
    this, all replicas predict alike and what is saved is the mean over all the data.
    """
    if strategy.num_replicas_in_sync < 2:
        return
    for variable in model.non_trainable_variables:
        if "float" not in str(variable.dtype):
            continue
        parts = strategy.experimental_local_results(getattr(variable, "value", variable))
        if len(parts) > 1:
            mean = tf.add_n([tf.convert_to_tensor(p) for p in parts]) / len(parts)
            for part in parts:
                part.assign(mean)
