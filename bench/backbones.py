"""Inference speed of every registered backbone with the baseline's head, weights=None, on this machine.

    python bench/backbones.py [--size 224] [--batch 16] [--batches 3] [--only NAME ...]

Prints one markdown row per model: parameters and images/s (after one warm-up batch). CPU figures here
rank the backbones; GPU throughput comes from bench/gpu.py on a lent card.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imet_utils.models import MODELS, create_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--only", nargs="*")
    args = p.parse_args()
    x = np.random.default_rng(0).integers(0, 255, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    print(f"| model | parameters | img/s at {args.size}px, batch {args.batch}, {os.cpu_count()} CPU cores |")
    print("|---|---|---|")
    for name in args.only or [m for m in MODELS if m != "tiny-cnn"]:
        model = create_model(name, 1103, image_size=args.size)
        step = tf.function(lambda batch, model=model: model(batch, training=False))
        step(x)
        start = time.perf_counter()
        for _ in range(args.batches):
            step(x).numpy()
        rate = args.batch * args.batches / (time.perf_counter() - start)
        print(f"| {name} | {model.count_params() / 1e6:.1f} M | {rate:.1f} |", flush=True)
        tf.keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    sys.exit(main())
