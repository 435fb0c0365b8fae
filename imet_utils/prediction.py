"""Prediction with exported models: loading them with TensorFlow alone, and the mean over test-time views,
on every replica of a distribution strategy.

The submit kernel runs this without Keras applications, efficientnet or albumentations.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from imet_utils.console import progress
from imet_utils.devices import sync_replica_states
from imet_utils.pipeline import views_dataset


@dataclasses.dataclass
class Throughput:
    """Image views predicted (one view of one image through one model) and the seconds they took."""

    views: int = 0
    seconds: float = 0.0

    def add(self, views: int, seconds: float) -> None:
        self.views += views
        self.seconds += seconds

    @property
    def ips(self) -> float | None:
        """Image views per second, or None before anything was timed."""
        return self.views / self.seconds if self.seconds > 0 else None


class InferenceModel:
    """An exported model loaded with TensorFlow alone; call it on a uint8 batch."""

    def __init__(self, path, strategy: tf.distribute.Strategy | None = None):
        self.path = str(path)
        self.distribute_strategy = strategy or tf.distribute.get_strategy()
        with self.distribute_strategy.scope():  # variables mirrored on every replica
            self._loaded = tf.saved_model.load(self.path)  # keep a reference: `serve` needs its variables

    def __call__(self, images):
        return self._loaded.serve(images)


def load_for_inference(path, strategy: tf.distribute.Strategy | None = None) -> InferenceModel:
    """Loads a model saved by ``export_for_inference``, under ``strategy`` (default: the current one) so that
    ``predict_views`` runs it on each of its replicas."""
    return InferenceModel(path, strategy)


def _call(model):
    """The model as a function of a uint8 batch: a Keras model in inference mode, or an exported one. It holds
    the model by a weak reference: the cached step (``_STEPS``) must not keep its own model alive."""
    ref = weakref.ref(model)
    if isinstance(model, keras.Model):
        return lambda x: ref()(x, training=False)
    return lambda x: ref()(x)


def model_strategy(model) -> tf.distribute.Strategy:
    """The strategy a model's variables live under: the one a Keras model was built in, the one an
    ``InferenceModel`` was loaded in, else the current one."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


def predict_batches(model, batches: tf.data.Dataset, *, strategy: tf.distribute.Strategy | None = None):
    """Yields the mean probability over the views of each image of each (batch, views, size, size, 3) batch,
    as float32 numpy, in the dataset's order.

    Each global batch is split over the strategy's replicas in equal shares (every GPU predicts), the last
    share padded with copies of the last row, so that no replica gets an empty share (a model on zero rows fails
    in its convolution: the last validation batch of a few images split [1, 0] did); the replicas' rows are put
    back in replica order, which is the batch's order, and the padding dropped: the rows are those of a
    single-device run.
    """
    strategy = strategy or model_strategy(model)
    if isinstance(model, keras.Model):
        sync_replica_states(model, strategy)
    replicas = strategy.num_replicas_in_sync
    step = _traced_step(model, strategy, batches.element_spec)
    for batch in batches:
        rows = int(batch.shape[0])
        if replicas > 1:
            batch = _shares(strategy, batch)
        parts = strategy.experimental_local_results(step(batch))
        yield np.concatenate([p.numpy() for p in parts])[:rows]


def _shares(strategy: tf.distribute.Strategy, batch: tf.Tensor):
    """The batch split into one equal, non-empty share per replica (padded with its last row), on each replica."""
    replicas = strategy.num_replicas_in_sync
    share = -(-int(batch.shape[0]) // replicas)
    pad = share * replicas - int(batch.shape[0])
    padded = tf.concat([batch, tf.repeat(batch[-1:], pad, axis=0)], axis=0) if pad else batch
    return strategy.experimental_distribute_values_from_function(
        lambda context: padded[
            context.replica_id_in_sync_group * share : (context.replica_id_in_sync_group + 1) * share
        ]
    )


# model -> {(strategy, input spec): its traced step}: traced once per model, not once per call (validation calls it
# every epoch, and a trace costs more than a small model's whole validation pass on a CPU). The steps reach their
# model only through a weak reference (``_call``), so an entry goes when its model does: a dead fold model (B3:
# weights and Adam state) must not hold device memory that a later fold's batch needs.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _traced_step(model, strategy: tf.distribute.Strategy, spec):
    """The model's prediction step over a batch of views, run on every replica and traced once."""
    steps = _STEPS.setdefault(model, {})
    key = (id(strategy), repr(spec))
    if key not in steps:
        call = _call(model)

        def replica_step(batch):
            b, v = tf.shape(batch)[0], tf.shape(batch)[1]
            flat = tf.reshape(batch, tf.concat([[b * v], tf.shape(batch)[2:]], axis=0))
            probs = tf.cast(call(flat), tf.float32)
            return tf.reduce_mean(tf.reshape(probs, tf.stack([b, v, tf.shape(probs)[-1]])), axis=1)

        def step(batch):
            return strategy.run(replica_step, args=(batch,))

        if strategy.num_replicas_in_sync > 1:  # per-replica shares: traced for the full and the last batch's shapes
            step = tf.function(step, reduce_retracing=True)
        else:  # one trace for every batch size, the last one's too
            step = tf.function(step, input_signature=[spec])

        steps[key] = step
    return steps[key]


def predict_views(
    model,
    paths: Sequence[str],
    *,
    size: int,
    batch_size: int,
    views: Sequence[str] = ("center",),
    workers: int = 0,
    desc: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """Mean probability over ``views`` for each path, in order (float32); ``desc`` shows a progress bar.

    Args:
        model: a Keras model or an ``InferenceModel``.
        paths: image files.
        size: the model's image size.
        batch_size: the global batch, split over the replicas.
        views: TTA views (``TTA_VIEWS`` names).
        workers: decoding threads; 0: all cores.
        desc: a progress bar's label.
        strategy: the replicas to predict on; default: the model's (``model_strategy``).
    """
    ds = views_dataset(paths, size=size, batch_size=batch_size, views=views, workers=workers)
    batches = predict_batches(model, ds, strategy=strategy)
    if desc:
        batches = progress(batches, total=-(-len(paths) // batch_size), desc=desc)
    out = list(batches)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
