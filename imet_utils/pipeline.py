"""tf.data input pipelines: decode -> (augment) -> batch -> prefetch, uint8 all the way.

Float conversion and normalisation live inside the model, so the offline kernel
can't preprocess differently from training. Eval views (for validation and TTA)
are plain TF ops, so the submit kernel needs neither albumentations nor cv2 here.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE

# Deterministic test-time views, in the order a TTA count takes them.
TTA_VIEWS = ("center", "center_flip", "top_left", "bottom_right", "top_right_flip", "bottom_left_flip",
             "top_right", "bottom_left")


def read_image(path: tf.Tensor) -> tf.Tensor:
    """Decodes a JPEG or PNG file to RGB uint8 (in-graph, parallel)."""
    img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)
    img.set_shape([None, None, 3])
    return img


def _scale_up(img: tf.Tensor, size: int) -> tf.Tensor:
    """Scales an image whose short side is below ``size`` up to it."""
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)

    def up():
        s = tf.cast(size, tf.float32) / tf.cast(short, tf.float32)
        nh = tf.maximum(size, tf.cast(tf.math.round(tf.cast(h, tf.float32) * s), tf.int32))
        nw = tf.maximum(size, tf.cast(tf.math.round(tf.cast(w, tf.float32) * s), tf.int32))
        return tf.cast(tf.clip_by_value(tf.image.resize(img, [nh, nw]), 0, 255), tf.uint8)

    return tf.cond(short < size, up, lambda: img)


def view(img: tf.Tensor, name: str, size: int) -> tf.Tensor:
    """One deterministic ``size`` x ``size`` view of an image (see ``TTA_VIEWS``)."""
    img = _scale_up(img, size)
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    place = name.replace("_flip", "")
    top = {"center": (h - size) // 2, "top_left": 0, "top_right": 0}.get(place, h - size)
    left = {"center": (w - size) // 2, "top_left": 0, "bottom_left": 0}.get(place, w - size)
    out = tf.image.crop_to_bounding_box(img, top, left, size, size)
    if name.endswith("_flip"):
        out = tf.image.flip_left_right(out)
    return out


def _options(workers: int) -> tf.data.Options:
    opts = tf.data.Options()
    if workers:
        opts.threading.private_threadpool_size = workers
    opts.deterministic = False
    return opts


def train_dataset(paths: Sequence[str], targets: np.ndarray, *, size: int, batch_size: int, seed: int,
                  transform: Optional[Callable[[np.ndarray], np.ndarray]] = None, workers: int = 0,
                  repeat: bool = False) -> tf.data.Dataset:
    """Shuffled, augmented (image uint8, target uint8) batches.

    Args:
        paths: image files.
        targets: (n, classes) 0/1 matrix.
        size: crop size.
        batch_size: global batch size.
        seed: shuffle seed.
        transform: numpy uint8 -> uint8 (size, size, 3) augmentation, e.g. albumentations;
            None: random crop and flip in TF.
        workers: threads for the pipeline; 0 lets tf.data decide.
        repeat: repeat forever (for step-based training).
    """
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=str), np.asarray(targets, dtype=np.uint8)))
    ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(lambda p, y: (read_image(p), y), num_parallel_calls=AUTOTUNE)
    if transform is None:
        def _tf_augment(img, y):
            img = tf.image.random_crop(_scale_up(img, size), [size, size, 3])
            return tf.image.random_flip_left_right(img), y
        ds = ds.map(_tf_augment, num_parallel_calls=AUTOTUNE)
    else:
        def _np_augment(img, y):
            out = tf.numpy_function(transform, [img], tf.uint8, stateful=True)
            out.set_shape([size, size, 3])
            return out, y
        ds = ds.map(_np_augment, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE).with_options(_options(workers))


def views_dataset(paths: Sequence[str], *, size: int, batch_size: int, views: Sequence[str] = ("center",),
                  workers: int = 0) -> tf.data.Dataset:
    """Batches of (batch, n_views, size, size, 3) uint8, in the order of ``paths``; one decode per image."""
    unknown = [v for v in views if v not in TTA_VIEWS]
    if unknown:
        raise ValueError(f"unknown TTA view(s) {unknown}; known: {list(TTA_VIEWS)}")
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=str))

    def _views(p):
        img = read_image(p)
        return tf.stack([view(img, v, size) for v in views])

    opts = _options(workers)
    opts.deterministic = True  # predictions must line up with ids
    return ds.map(_views, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE).with_options(opts)
