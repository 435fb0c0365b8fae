"""Exported SavedModel inference speed on this machine: a mixed_float16 model's export (``fold<k>/model/``)
against its float32 copy (``fold<k>/model_f32/``), which a CPU submit session predicts with (issue 23).

    python bench/export_precision.py --model efficientnet-b0 --size 96

Prints one line per export: images per second, the best of ``--runs`` timed runs of ``--seconds`` each after a
warm-up, on batches of ``--batch`` random uint8 images. ``weights=None``: nothing is downloaded.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def images_per_second(model, x, *, seconds: float, runs: int) -> float:
    model(x)  # warm-up: the first call traces
    best = 0.0
    for _ in range(runs):
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            model(x).numpy()
            reps += 1
        best = max(best, reps * len(x) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-b0")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--classes", type=int, default=1103)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import keras
    import numpy as np

    from imet_utils.models import create_model, export_float32_copy, export_for_inference
    from imet_utils.prediction import load_for_inference

    keras.mixed_precision.set_global_policy("mixed_float16")
    model = create_model(args.model, args.classes, image_size=args.size, weights=None, device_augment=True)
    keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        export_for_inference(model, Path(tmp) / "model")
        export_float32_copy(model, Path(tmp) / "model_f32")
        for name in ("model", "model_f32"):
            ips = images_per_second(load_for_inference(Path(tmp) / name), x, seconds=args.seconds, runs=args.runs)
            print(f"{args.model} {args.size}px {name}: {ips:.1f} img/s (batch {args.batch}, best of {args.runs})")


if __name__ == "__main__":
    main()
