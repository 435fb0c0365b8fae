"""tf.data input pipelines: decode -> (augment) -> batch -> prefetch, uint8 all the way.

Float conversion and normalisation live inside the model, so the offline kernel
can't preprocess differently from training. Eval views (for validation and TTA)
are plain TF ops, so the submit kernel needs neither albumentations nor cv2 here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import tensorflow as tf

from imet_utils.config import TTA_VIEWS
from imet_utils.images import BadImage, to_rgb8

AUTOTUNE = tf.data.AUTOTUNE


def read_image(path: tf.Tensor) -> tf.Tensor:
    """Decodes a JPEG or PNG file to RGB uint8 (in-graph, parallel)."""
    img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)
    img.set_shape([None, None, 3])
    return img


def _decode_png(data: bytes) -> np.ndarray:
    """Decodes with OpenCV (about 1.5x faster than TF's PNG decoder; it releases the GIL) to RGB uint8, whatever
    the PNG's depth and channels."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise BadImage("not a decodable image")
    return to_rgb8(img)


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


def _crop_window(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
    """A uniformly random ``size`` x ``size`` window inside an image at least that large: [top, left, size, size]."""
    top = tf.random.uniform([], 0, height - size + 1, tf.int32)
    left = tf.random.uniform([], 0, width - size + 1, tf.int32)
    return tf.stack([top, left, size, size])


def _random_crop(img: tf.Tensor, size: int) -> tf.Tensor:
    """A random ``size`` crop of a decoded image, scaled up first if its short side is below ``size``."""
    img = _scale_up(img, size)
    shape = tf.shape(img)
    window = _crop_window(shape[0], shape[1], size)
    return tf.image.crop_to_bounding_box(img, window[0], window[1], size, size)


def _crop_flip(path: tf.Tensor, size: int, *, jpeg: bool) -> tf.Tensor:
    """Reads one image and returns a random ``size`` crop, flipped half the time: the train pipeline's crop and
    flip (the rest of the augmentation then runs on the device, or not at all).

    A JPEG whose short side covers the crop (every cached one) is decoded only inside the crop window; a PNG is
    decoded by OpenCV (``_decode_png``), then cropped here.
    """
    data = tf.io.read_file(path)
    if jpeg:
        shape = tf.image.extract_jpeg_shape(data)
        img = tf.cond(
            tf.reduce_min(shape[:2]) >= size,
            lambda: tf.image.decode_and_crop_jpeg(data, _crop_window(shape[0], shape[1], size), channels=3),
            lambda: _random_crop(tf.io.decode_jpeg(data, channels=3), size),
        )
    else:
        decoded = tf.numpy_function(_decode_png, [data], tf.uint8, stateful=False)
        decoded.set_shape([None, None, 3])
        img = _random_crop(decoded, size)
    img.set_shape([size, size, 3])
    return tf.image.random_flip_left_right(img)


def train_dataset(
    paths: Sequence[str],
    targets: np.ndarray,
    *,
    size: int,
    batch_size: int,
    seed: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    workers: int = 0,
    repeat: bool = False,
    mixup_alpha: float = 0.0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Shuffled (image uint8, target uint8) batches.

    Args:
        paths: image files (the JPEG cache, or PNGs).
        targets: (n, classes) 0/1 matrix.
        size: crop size.
        batch_size: global batch size.
        seed: shuffle seed.
        transform: numpy uint8 image -> uint8 (size, size, 3), e.g. albumentations, run
            per image on the CPU; None: random crop and flip in TF (the rest of the
            augmentation then runs on the device, in the model).
        workers: threads for the pipeline; 0 lets tf.data decide.
        repeat: repeat forever (for step-based training).
        mixup_alpha: > 0 mixes each batch with a shuffled copy of itself, weight ~ Beta(alpha, alpha);
            targets then become float32.
        drop_remainder: full batches only (training: a last batch of one image on two replicas breaks
            BatchNorm); each epoch's shuffle leaves other images out.
    """
    paths = np.asarray(paths, dtype=str)
    jpeg = bool(len(paths)) and all(p.lower().endswith((".jpg", ".jpeg")) for p in paths)
    ds = tf.data.Dataset.from_tensor_slices((paths, np.asarray(targets, dtype=np.uint8)))
    ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if transform is None:
        ds = ds.map(lambda p, y: (_crop_flip(p, size, jpeg=jpeg), y), num_parallel_calls=AUTOTUNE)
    else:

        def _np_augment(p, y):
            out = tf.numpy_function(transform, [read_image(p)], tf.uint8, stateful=True)
            out.set_shape([size, size, 3])
            return out, y

        ds = ds.map(_np_augment, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if mixup_alpha > 0:
        ds = ds.map(lambda x, y: _mixup(x, y, mixup_alpha), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(_options(workers))


def _mixup(images: tf.Tensor, targets: tf.Tensor, alpha: float):
    """Mixup on a batch: lam ~ Beta(alpha, alpha) (two Gammas), the batch mixed with its own shuffle."""
    a = tf.random.gamma([], alpha)
    b = tf.random.gamma([], alpha)
    lam = a / (a + b)
    perm = tf.random.shuffle(tf.range(tf.shape(images)[0]))
    x = tf.cast(images, tf.float32)
    mixed = lam * x + (1 - lam) * tf.gather(x, perm)
    y = tf.cast(targets, tf.float32)
    return tf.cast(tf.round(mixed), tf.uint8), lam * y + (1 - lam) * tf.gather(y, perm)


def views_dataset(
    paths: Sequence[str], *, size: int, batch_size: int, views: Sequence[str] = ("center",), workers: int = 0
) -> tf.data.Dataset:
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
