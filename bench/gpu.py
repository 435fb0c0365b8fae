"""GPU throughput (under 5 minutes): training fed by the baseline's input pipeline against ours; TTA inference.

    python bench/gpu.py [--model efficientnet-b3] [--size 288] [--batch 32] [--steps 40] [--smoke]

- seed: fp32, the baseline's input pipeline (``bench/pipeline.py``'s ``seed_sequence``: a Python keras Sequence,
  cv2 + the baseline's albumentations transforms per image, efficientnet's preprocess_input per batch), from PNG,
  into the same backbone and head taking the preprocessed float input.
- ours: the tf.data pipeline from the JPEG cache, mixed precision (float16), our augmentation on the device.
- inference: our exported SavedModel, 2 TTA views (original + flip), batch 64.

Both training setups use weights=None and the same generated iMet-like images. Each runs in its own process
(mixed precision is a global policy). Train figures are images/s over ``--steps`` steps after a warm-up
of 5 steps. ``--smoke`` runs a tiny CPU version so that the script itself is tested without a GPU.
The last line: ``gpu=<name> seed_train=<img/s> ours_train=<img/s> speedup=<x> tta_infer=<img/s>``.

It also writes the record a kernel writes, ``<runs>/bench-gpu/v<N>/run_status.json`` (card, replicas, model,
image size, per-replica batch, ``train_ips`` = ours, ``infer_ips`` = image views/s), which ``--plan`` reads as a
measured figure for that card, model and size. ``--runs`` defaults to the repo's runs/ (``--smoke``: none).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip().splitlines()[0].replace(" ", "_") if out.returncode == 0 else "none"
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "none"


def _train_worker(args) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from imet_utils.models import create_model

    paths = json.loads(Path(args.paths).read_text())
    n_classes = 1103
    y = (np.random.default_rng(0).random((len(paths), n_classes)) < 0.003).astype(np.uint8)
    if args.what == "ours":
        from imet_utils.pipeline import train_dataset

        if tf.config.list_logical_devices("GPU"):
            keras.mixed_precision.set_global_policy("mixed_float16")
        data = train_dataset(paths, y, size=args.size, batch_size=args.batch, seed=0, repeat=True)
        model = create_model(args.model, n_classes, image_size=args.size, device_augment=True)
    else:
        from pipeline import seed_sequence  # bench/pipeline.py

        data = seed_sequence(paths, y, size=args.size, batch=args.batch, steps=10**6)
        # The baseline's model took preprocess_input's output: the same backbone and head, on float32 input.
        base = create_model(args.model, n_classes, image_size=args.size)
        names = [layer.name for layer in base.layers]
        x = inputs = keras.Input((args.size, args.size, 3))
        for layer in base.layers[names.index("normalize") + 1 :]:
            x = layer(x)
        model = keras.Model(inputs, x)
    model.compile(keras.optimizers.Adam(3e-4), "binary_crossentropy")
    model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    return {"rate": args.steps * args.batch / (time.perf_counter() - start), **_device()}


def _device() -> dict:
    import keras

    from imet_utils.devices import card_name

    return {"card": card_name(1), "policy": keras.mixed_precision.global_policy().name}


def _infer_worker(args) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from imet_utils.models import create_model, export_for_inference
    from imet_utils.prediction import load_for_inference, predict_views

    paths = json.loads(Path(args.paths).read_text())
    if tf.config.list_logical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    model = create_model(args.model, 1103, image_size=args.size)
    export = Path(tempfile.mkdtemp()) / "model"
    export_for_inference(model, export)
    loaded = load_for_inference(export)
    predict_views(loaded, paths[:64], size=args.size, batch_size=64, views=("center", "center_flip"))
    start = time.perf_counter()
    probs = predict_views(loaded, paths, size=args.size, batch_size=64, views=("center", "center_flip"))
    assert probs.shape == (len(paths), 1103) and np.isfinite(probs).all()
    return {"rate": len(paths) / (time.perf_counter() - start), **_device()}


def write_record(runs: Path, args, results: dict) -> Path:
    """``runs/bench-gpu/v<N>/run_status.json``, the next N: the fields a kernel's run_status.json has."""
    from imet_utils.run_status import write_run_status

    done = [int(p.name[1:]) for p in (runs / "bench-gpu").glob("v*") if p.name[1:].isdigit()]
    out = runs / "bench-gpu" / f"v{max(done, default=0) + 1}"
    out.mkdir(parents=True)
    return write_run_status(
        out,
        ok=True,
        kernel="bench",
        stages={},
        card=results["ours"]["card"],
        replicas=1,
        policy=results["ours"]["policy"],
        model=args.model,
        image_size=args.size,
        batch_size=args.batch,
        train_ips=round(results["ours"]["rate"], 1),
        infer_ips=round(results["infer"]["rate"] * 2, 1),  # 2 views per image: image views/s, as the kernels
        seed_train_ips=round(results["seed"]["rate"], 1),
    )


def main() -> int:
    args = _parse_args()
    if args.worker:
        args.what = args.worker
        result = _infer_worker(args) if args.what == "infer" else _train_worker(args)
        print(json.dumps(result))
        return 0

    work = _write_path_lists(args)
    gpu = _gpu_name()
    print(f"GPU: {gpu}; {args.model} at {args.size}px, batch {args.batch}, {args.steps} timed steps", flush=True)
    results = {}
    for what, files in (("seed", "png.json"), ("ours", "jpg.json"), ("infer", "jpg.json")):
        res = _run_worker(args, what, work / files)
        if res.returncode:
            print(res.stderr[-3000:], file=sys.stderr)
            return 1
        results[what] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{what}: {results[what]['rate']:.1f} img/s", flush=True)
    rates = {what: r["rate"] for what, r in results.items()}
    runs = args.runs or (None if args.smoke else ROOT / "runs")
    if runs is not None:
        print(f"record for --plan: {write_record(runs, args, results)}", flush=True)
    print(
        f"gpu={gpu} seed_train={rates['seed']:.1f} ours_train={rates['ours']:.1f} "
        f"speedup={rates['ours'] / rates['seed']:.2f} tta_infer={rates['infer']:.1f}"
    )
    return 0


def _parse_args() -> argparse.Namespace:
    """The options; ``--smoke`` replaces the model, size, batch, steps and image count with tiny ones."""
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="efficientnet-b3")
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--smoke", action="store_true", help="tiny CPU run: tiny-cnn, 64 px, few steps")
    p.add_argument("--runs", type=Path, help="where the run_status.json record goes (default runs/; --smoke: none)")
    p.add_argument("--worker")
    p.add_argument("--paths")
    args = p.parse_args()
    if args.smoke:
        args.model, args.size, args.batch, args.steps, args.n = "tiny-cnn", 64, 8, 3, 48
    return args


def _write_path_lists(args) -> Path:
    """A work folder with generated PNGs, their JPEG cache, and png.json and jpg.json listing them."""
    from pipeline import make_images  # bench/pipeline.py

    from imet_utils.images import build_cache, cache_short_side

    work = Path(tempfile.mkdtemp())
    pngs = make_images(work / "png", args.n)
    ids = sorted(p.stem for p in pngs.glob("*.png"))
    cached = build_cache(
        ids, pngs, work / "cache", split="bench", short_side=cache_short_side(args.size, 1.1), max_aspect=4.0
    )
    (work / "png.json").write_text(json.dumps([str(pngs / f"{i}.png") for i in ids]))
    (work / "jpg.json").write_text(json.dumps([p for p in cached.paths if p]))
    return work


def _run_worker(args, what: str, paths_file: Path) -> subprocess.CompletedProcess:
    """One measurement (``what``: seed, ours or infer) in its own process, on the images ``paths_file`` lists."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        what,
        "--paths",
        str(paths_file),
        "--model",
        args.model,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


if __name__ == "__main__":
    sys.exit(main())
