"""Input pipeline throughput, the same images, in this order:

  (a) raw PNG decode (cv2) on one core
  (b) the baseline's input pipeline on one core: its keras Sequence (cv2 per image, the baseline's albumentations
      transforms, efficientnet's preprocess_input on the batch); see ``seed_sequence``
  (c) our tf.data pipeline from PNG on one core (default augment="device": crop + flip here; our affine,
      brightness and noise run batched on the accelerator, inside the model)
  (d) our tf.data pipeline from the JPEG cache on one core
  (e) our tf.data pipeline from PNG on all cores

    python bench/pipeline.py [IMG_DIR] [--size 288] [--batch 32] [--n 512]

Without IMG_DIR it generates iMet-like PNGs (300 px short side). Each measurement runs in its own process,
after one warm-up pass over the images (so the OS page cache holds the files in every case), with one worker
thread for "one core": a single Python thread for (a) and (b); for ours, a tf.data private thread pool of one
thread, one TF op thread and cv2.setNumThreads(1). --pin also pins each process to its cores with
sched_setaffinity; on our 2-core VM that caps every tf.data pipeline at about 405 img/s, whatever the decoder
(TF's runtime threads then share the one core), so both figures are recorded in bench/RESULTS.md. Two lines
for reference follow: our pipeline with augment="albumentations" from the cache, one core, with each preset.
The last line is the summary:
png_vs_decode=(c)/(a) cached_vs_seed=(d)/(b) cores_speedup=(e)/(c)
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


def make_images(out: Path, n: int, seed: int = 0) -> Path:
    """iMet-like PNGs: 300 px short side, smooth shapes plus grain, about 200-250 KB each."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        long_ = int(rng.integers(300, 520))
        h, w = (300, long_) if i % 2 else (long_, 300)
        low = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
        img += rng.normal(0, 7, img.shape).astype(np.int16)
        cv2.imwrite(str(out / f"{i:016x}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return out


# ----------------------------------------------------------------------------- workers (one process each)
def _pin(cores: str, pin: bool) -> int:
    """Threads for the measurement; with ``pin``, also restricts the process to that many cores."""
    import cv2

    n = 1 if cores == "one" else (os.cpu_count() or 1)
    cv2.setNumThreads(n)
    if pin:
        os.sched_setaffinity(0, set(range(n)))
    return n


def _decode(paths, size, batch):
    import cv2

    cv2.setNumThreads(1)
    for p in paths:
        cv2.imread(p)
    start = time.perf_counter()
    for p in paths:
        img = cv2.imread(p)
        assert img is not None
    return len(paths) / (time.perf_counter() - start)


def seed_sequence(paths, targets, *, size: int, batch: int, steps=None):
    """The seed notebook's input pipeline, for the benches' baseline.

    A Python ``keras.utils.Sequence``: per batch, each image is read with ``cv2.imread`` (then BGR to RGB),
    augmented with the baseline's albumentations transforms (``train_transforms(size, "seed")``: flip,
    shift-scale-rotate, crop; no brightness, no noise), and the stacked uint8 batch goes through efficientnet's
    ``preprocess_input`` (``efficientnet.tfkeras``; the same for B0-B7: float32, /255, then ImageNet mean and
    std, its 'torch' mode). One process: called directly it runs in the caller's thread; in ``model.fit``
    (workers=1) Keras runs it in one producer thread, as Keras 2's ``fit_generator`` did by default.

    Args:
        paths: image files.
        targets: (n, classes) 0/1 matrix; batches carry it as float32.
        size: crop size.
        batch: images per batch.
        steps: batches per epoch, wrapping around ``paths`` (for ``model.fit``); None: one pass over ``paths``.
    """
    import cv2
    import keras
    import numpy as np
    from efficientnet.tfkeras import preprocess_input

    sys.path.insert(0, str(ROOT))
    from imet_utils.augment import train_transforms

    aug = train_transforms(size, "seed")
    targets = np.asarray(targets, np.float32)

    class SeedSequence(keras.utils.Sequence):
        def __init__(self):
            super().__init__()  # workers=1, no multiprocessing: one process, as the baseline's

        def __len__(self):
            return steps or (len(paths) + batch - 1) // batch

        def __getitem__(self, i):
            if steps is None:
                idx = list(range(i * batch, min((i + 1) * batch, len(paths))))
            else:
                idx = [(i * batch + k) % len(paths) for k in range(batch)]
            imgs = [aug(image=cv2.cvtColor(cv2.imread(paths[k]), cv2.COLOR_BGR2RGB))["image"] for k in idx]
            return preprocess_input(np.array(imgs)), targets[idx]

    return SeedSequence()


def _seed_generator(paths, size, batch):
    """(b): one pass over ``seed_sequence`` in this thread."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    seq = seed_sequence(paths, np.zeros((len(paths), 1103), np.uint8), size=size, batch=batch)
    for i in range(len(seq)):
        seq[i]
    start = time.perf_counter()
    n = 0
    for i in range(len(seq)):
        x, _ = seq[i]
        n += len(x)
    rate = n / (time.perf_counter() - start)
    assert x.dtype == np.float32 and x.shape[1:] == (size, size, 3)
    return rate


def _ours(paths, size, batch, threads, mode="device", preset="ours"):
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    sys.path.insert(0, str(ROOT))
    from imet_utils.augment import augment_image, train_transforms
    from imet_utils.pipeline import train_dataset

    transform = None  # the default "device" mode: crop + flip here, the rest batched on the accelerator
    if mode == "albumentations":
        aug = train_transforms(size, preset)
        transform = lambda img: augment_image(aug, img, size)  # noqa: E731
    ds = train_dataset(
        paths,
        np.zeros((len(paths), 1103), np.uint8),
        size=size,
        batch_size=batch,
        seed=0,
        transform=transform,
        workers=threads,
    )
    for _ in ds:  # warm-up: traces the graph, fills the page cache
        pass
    start = time.perf_counter()
    n = sum(int(x.shape[0]) for x, _ in ds)
    rate = n / (time.perf_counter() - start)
    first = next(iter(ds))[0]
    assert first.dtype == tf.uint8
    return rate


def _worker(args) -> None:
    paths = json.loads(Path(args.paths).read_text())
    threads = _pin(args.cores, args.pin)
    if args.what == "decode":
        rate = _decode(paths, args.size, args.batch)
    elif args.what == "seed":
        rate = _seed_generator(paths, args.size, args.batch)
    elif args.what in ("ours-alb", "ours-alb-seed"):
        preset = "seed" if args.what == "ours-alb-seed" else "ours"
        rate = _ours(paths, args.size, args.batch, threads, mode="albumentations", preset=preset)
    else:
        rate = _ours(paths, args.size, args.batch, threads)
    print(json.dumps({"rate": rate}))


# ----------------------------------------------------------------------------- driver
def _run(what, paths_file, cores, size, batch, pin=False) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            what,
            "--paths",
            str(paths_file),
            "--cores",
            cores,
            "--size",
            str(size),
            "--batch",
            str(batch),
        ]
        + (["--pin"] if pin else []),
        capture_output=True,
        text=True,
        env=env,
    )
    if res.returncode:
        raise SystemExit(f"{what} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["rate"]


def main() -> int:
    args = _parse_args()
    if args.worker:
        args.what = args.worker
        _worker(args)
        return 0
    png_file, jpg_file = _write_path_lists(args)
    rates = _measure(args, png_file, jpg_file)
    _measure_albumentations(args, jpg_file)
    print(
        f"png_vs_decode={rates['c'] / rates['a']:.2f} cached_vs_seed={rates['d'] / rates['b']:.2f} "
        f"cores_speedup={rates['e'] / rates['c']:.2f}"
    )
    return 0


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("img_dir", nargs="?", type=Path)
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--worker")
    p.add_argument("--paths")
    p.add_argument("--cores", default="one")
    p.add_argument("--pin", action="store_true", help="pin each process to its cores (see the module doc)")
    return p.parse_args()


def _write_path_lists(args) -> tuple[Path, Path]:
    """The PNGs (generated without IMG_DIR) and their JPEG cache, each listed in a JSON file; both described."""
    sys.path.insert(0, str(ROOT))
    from imet_utils.images import build_cache, cache_short_side

    img_dir = args.img_dir or make_images(Path(tempfile.mkdtemp()) / "png", args.n)
    pngs = sorted(str(p) for p in Path(img_dir).glob("*.png"))[: args.n]
    size_kb = sum(os.path.getsize(p) for p in pngs) / len(pngs) / 1024
    print(
        f"{len(pngs)} PNGs from {img_dir}, mean {size_kb:.0f} KB; crop {args.size}, batch {args.batch}, "
        f"{os.cpu_count()} cores"
    )
    work = Path(tempfile.mkdtemp())
    ids = [Path(p).stem for p in pngs]
    start = time.perf_counter()
    cached = build_cache(
        ids,
        Path(pngs[0]).parent,
        work / "cache",
        split="bench",
        short_side=cache_short_side(args.size, 1.1),
        max_aspect=4.0,
    )
    cache_s = time.perf_counter() - start
    jpgs = [p for p in cached.paths if p]
    jpg_kb = sum(os.path.getsize(p) for p in jpgs) / len(jpgs) / 1024
    print(
        f"cache: {len(jpgs)} JPEGs in {cache_s:.1f}s, mean {jpg_kb:.0f} KB "
        f"({jpg_kb * 1000 / 1024:.0f} MB per 1,000 images)"
    )
    png_file, jpg_file = work / "png.json", work / "jpg.json"
    png_file.write_text(json.dumps(pngs))
    jpg_file.write_text(json.dumps(jpgs))
    return png_file, jpg_file


def _measure(args, png_file: Path, jpg_file: Path) -> dict[str, float]:
    """(a) to (e), each in its own process, printed as they come."""
    rates = {}
    for key, what, files, cores, label in [
        ("a", "decode", png_file, "one", "raw PNG decode, 1 core"),
        ("b", "seed", png_file, "one", "the baseline's input pipeline, 1 core"),
        ("c", "ours", png_file, "one", "our pipeline from PNG, 1 core"),
        ("d", "ours", jpg_file, "one", "our pipeline from cache, 1 core"),
        ("e", "ours", png_file, "all", f"our pipeline from PNG, {os.cpu_count()} cores"),
    ]:
        rates[key] = _run(what, files, cores, args.size, args.batch, args.pin)
        print(f"({key}) {label}: {rates[key]:.0f} img/s", flush=True)
    return rates


def _measure_albumentations(args, jpg_file: Path) -> None:
    """The reference lines: our pipeline with augment="albumentations", from the cache, with each preset."""
    for what, preset in (("ours-alb", "ours"), ("ours-alb-seed", "seed")):
        alb = _run(what, jpg_file, "one", args.size, args.batch, args.pin)
        print(
            f"(for reference) augment='albumentations', augment_preset={preset!r}, from cache, 1 core: {alb:.0f} img/s",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
