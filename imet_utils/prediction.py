"""Prediction with exported models: loading them with TensorFlow alone, and the mean over test-time views.

The submit kernel runs this without Keras applications, efficientnet or albumentations.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from imet_utils.console import progress
from imet_utils.pipeline import views_dataset


class InferenceModel:
    """An exported model loaded with TensorFlow alone; call it on a uint8 batch."""

    def __init__(self, path):
        import tensorflow as tf

        self.path = str(path)
        self._loaded = tf.saved_model.load(self.path)  # keep a reference: `serve` needs its variables

    def __call__(self, images):
        return self._loaded.serve(images)


def load_for_inference(path) -> InferenceModel:
    """Loads a model saved by ``export_for_inference``."""
    return InferenceModel(path)


def predict_views(
    model,
    paths: Sequence[str],
    *,
    size: int,
    batch_size: int,
    views: Sequence[str] = ("center",),
    workers: int = 0,
    desc: str | None = None,
) -> np.ndarray:
    """Mean probability over ``views`` for each path, in order (float32); ``desc`` shows a progress bar."""
    out = []
    batches = views_dataset(paths, size=size, batch_size=batch_size, views=views, workers=workers)
    if desc:
        batches = progress(batches, total=-(-len(paths) // batch_size), desc=desc)
    for batch in batches:
        b, v = int(batch.shape[0]), int(batch.shape[1])
        flat = tf.reshape(batch, (b * v, size, size, 3))
        probs = model(flat, training=False) if isinstance(model, keras.Model) else model(flat)
        out.append(tf.reduce_mean(tf.reshape(tf.cast(probs, tf.float32), (b, v, -1)), axis=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
