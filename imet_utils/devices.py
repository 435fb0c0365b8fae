"""Devices: the distribution strategy and mixed-precision policy, what XLA can run on, the loss-scale optimizer
that is safe with several replicas, the learning rate for the global batch, and the versions that ran."""

from __future__ import annotations

import dataclasses
import importlib.metadata
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
    if devices:  # the same policy as on Kaggle's GPUs: tests on logical CPUs run what a T4 x2 runs
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        log(f"{len(devices)} device(s) {list(devices)}; policy {keras.mixed_precision.global_policy().name}")
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


def scaled_lr(config: TrainConfig, replicas: int) -> float:
    """The Adam rate for the run's global batch: ``lr`` x (per-replica batch x replicas) / ``lr_reference_batch``
    (linear scaling; ``lr`` is the rate at the 2019 baseline notebook's batch of 32), or ``lr`` as given when
    ``lr_reference_batch`` is 0. A T4 x2 (global batch 64) thus trains at twice a P100's (32) rate."""
    if not config.lr_reference_batch:
        return config.lr
    return config.lr * config.batch_size * max(1, replicas) / config.lr_reference_batch


def with_scaled_lr(config: TrainConfig, replicas: int) -> TrainConfig:
    """The config with ``effective_lr`` set for ``replicas`` (what config.json records and training uses)."""
    return dataclasses.replace(config, effective_lr=scaled_lr(config, replicas))


def training_lr(config: TrainConfig) -> float:
    """The rate the optimizer is built with: ``effective_lr`` once set for the run, else ``lr``."""
    return config.lr if config.effective_lr is None else config.effective_lr


@keras.saving.register_keras_serializable(package="imet_utils")
class AllReplicaLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic loss scaling, but a step is skipped (and the scale halved) when *any* replica's gradients
    are non-finite.

    Keras 3.13's ``LossScaleOptimizer._tf_apply`` takes replica 0's finiteness as everyone's, assuming the
    gradients were already summed over the replicas; in Keras 3's TensorFlow train step they are not (the sum
    happens inside the inner optimizer's apply). A float16 overflow on the second GPU alone was then applied:
    the summed gradient was inf and every weight became NaN. Here each replica's flag is summed over the
    replicas (``ReplicaContext.all_reduce``, which every strategy supports) before the step is taken or skipped.
    """

    def _tf_apply(self, grads, trainable_variables=None):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync < 2:
            return super()._tf_apply(grads, trainable_variables)
        local_bad = 1.0 - tf.cast(self.check_finite(grads), tf.float32)
        finite = tf.equal(context.all_reduce(tf.distribute.ReduceOp.SUM, local_bad), 0.0)  # alike on every replica
        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            keras.ops.cond(
                finite,
                lambda: self._stateful_handle_finite_grads(grads, trainable_variables),
                self._stateful_handle_non_finite_grads,
            )
            return None

        def cross_replica(distribution, finite, grads, trainable_variables):
            def apply_fn():
                distribution.extended.call_for_each_replica(
                    self._stateful_handle_finite_grads, args=(grads, trainable_variables)
                )

            # a cond in the cross-replica context, as Keras does: the inner apply calls merge_call
            keras.ops.cond(
                distribution.experimental_local_results(finite)[0], apply_fn, self._stateful_handle_non_finite_grads
            )

        context.merge_call(cross_replica, args=(finite, grads, trainable_variables))
        return None


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam at ``training_lr``; under mixed_float16 wrapped in ``AllReplicaLossScaleOptimizer`` (passed to
    ``compile`` explicitly, so Keras does not wrap it in its own, which misses an overflow on one replica)."""
    adam = keras.optimizers.Adam(training_lr(config))
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        return AllReplicaLossScaleOptimizer(adam)
    return adam


def runtime_versions() -> dict[str, str | None]:
    """TensorFlow, Keras (and tf_keras, which Kaggle's image also ships), CUDA and cuDNN as built into TF: what
    ran, for the log's first lines and run_status.json (Kaggle's image follows Colab's, not requirements.txt)."""
    build = tf.sysconfig.get_build_info()
    try:
        tf_keras = importlib.metadata.version("tf_keras")
    except importlib.metadata.PackageNotFoundError:
        tf_keras = None
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_keras": tf_keras,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
    }


def describe_run(replicas: int) -> dict:
    """What runs: the card, the replicas, the precision policy and the versions (``runtime_versions``)."""
    return {
        "card": card_name(replicas),
        "replicas": replicas,
        "policy": keras.mixed_precision.global_policy().name,
        "versions": runtime_versions(),
    }


def log_run(replicas: int) -> dict:
    """Logs ``describe_run`` in one line (a kernel's first lines) and returns it."""
    run = describe_run(replicas)
    versions = ", ".join(f"{k} {v}" for k, v in run["versions"].items() if v)
    log(f"running on {run['card']} ({run['replicas']} replica(s), policy {run['policy']}); {versions}")
    return run


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
