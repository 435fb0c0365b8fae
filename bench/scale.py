"""Full-scale rehearsal: the built kernels on an iMet 2019-sized competition, timed stage by stage.

    python bench/scale.py [--work /tmp/imet-scale] [--real-dir ../shared/data/imet2019]
                          [--n-train N] [--n-test N] [--tta 2] [--n-folds 5] [--set k=v] [--set-submit k=v] [--keep]

It writes, in WORK/data, an iMet-format competition with the real CSVs (train.csv and labels.csv copied from
REAL_DIR: 109,237 ids and 1,103 labels; sample_submission.csv's 38,801 test ids) and tiny generated PNGs
(32-48 px a side, background and a square coloured by the image's labels), made on every core and reused by
later runs: only missing images are drawn. ``--n-train``/``--n-test`` take a seeded subsample of the CSVs for
a quick run.

Then it builds the kernels with a cheap model (tiny-cnn at 32 px, batch 256, 1 epoch, all 5 folds, so every
train image gets an out-of-fold prediction; ``--tta`` views at submit) and runs the *built* train kernel and
then the *built* submit kernel, each as its own process in a simulated /kaggle, as ``build_kernel.py
--run-local`` does (the submit kernel without efficientnet or albumentations). Each kernel's output goes to
the console and to WORK/logs/<kernel>.log; its ``stage <name>: <seconds> s`` lines give the stage timings,
and ``os.wait4`` gives that process's own peak RSS.

The report (also WORK/report.md) is a markdown table of stages, per-kernel wall time and peak RSS, then the
targets (each kernel under 8,000 MB, the decision stage under 180 s) and the last line:
``scale: train_peak_rss_mb=<MB> submit_peak_rss_mb=<MB> decision_s=<s> total_s=<s>``, where total_s is the
whole bench (image generation, build and both kernels) and a figure that wasn't measured reads ``nan``.
Exit status: 0 all targets met, 1 a target missed (or not measured), 2 a kernel failed.
Without ``--keep``, a successful run deletes the kernels' folders (outputs, image caches) and keeps the data.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kernel_build  # noqa: E402

DEFAULT_WORK = Path("/tmp/imet-scale")
DEFAULT_REAL_DIR = ROOT.parent / "shared" / "data" / "imet2019"
IMAGE_SIDES = (32, 48)  # smallest and largest side of a generated image, px
IMAGES_PER_TASK = 2000  # a pool task: large enough that process overhead vanishes
# The cheap model: every train image in some fold's training, one epoch, so OOF covers all images.
SCALE_TRAIN = {"image_size": 32, "epochs": 1, "batch_size": 256, "time_budget_hours": 11.5}
SCALE_SUBMIT = {"batch_size": 256}
RSS_TARGET_MB = 8000.0
DECISION_TARGET_S = 180.0
TAIL_LINES = 40  # the end of a failed kernel's output, in the report
STAGE_RE = re.compile(r"stage (\S+): ([0-9.]+) s")
# What each known stage covers, for the table; stages not listed here are reported under their own name.
STAGE_LABELS = {
    "train": {
        "setup": "setup (config, paths)",
        "rehearsal": "first minute: packages, the model, one training and one prediction step",
        "csv": "CSV checks",
        "folds": "folds",
        "cache": "train image cache",
        "training": "training (all folds)",
        "oof": "OOF assembly",
    },
    "submit": {
        "setup": "setup (config, paths)",
        "csv": "CSV checks",
        "oof": "OOF loading",
        "decision": "decision-rule choice",
        "second_level": "second level (stacking), cross-fitted",
        "decision_files": "decision.json and plots",
        "test_cache": "test image cache",
        "predict": "test prediction",
        "submission": "submission writing",
    },
}


# --------------------------------------------------------------------------- the competition
def _read_ids_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def _subsample(df, n: int | None, seed: int):
    """``n`` rows drawn with ``seed``, in their original order (all rows if ``n`` is None or too large)."""
    import numpy as np

    if n is None or n >= len(df):
        return df
    keep = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[keep]


def _write_if_changed(path: Path, text: str) -> None:
    if not (path.is_file() and path.read_text() == text):
        path.write_text(text)


def prepare_csvs(
    real_dir: Path, data: Path, *, n_train: int | None, n_test: int | None, seed: int = 0
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """Writes labels.csv, train.csv and sample_submission.csv into ``data`` from ``real_dir``.

    Args:
        real_dir: a folder with the competition's train.csv, labels.csv and sample_submission.csv.
        data: the competition folder to write.
        n_train, n_test: subsample sizes (None: every row).
        seed: the subsample's seed.

    Returns:
        (train, test): per image, (id, first label, last label) to colour it by; -1 for test images.
    """
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_dir / "labels.csv", data / "labels.csv")
    tables = []
    for name, n in (("train.csv", n_train), ("sample_submission.csv", n_test)):
        full = _read_ids_csv(real_dir / name)
        df = _subsample(full, n, seed)
        if len(df) == len(full):
            shutil.copyfile(real_dir / name, data / name)  # the real file, byte for byte
        else:
            _write_if_changed(data / name, df.to_csv(index=False))
        tables.append(df)
    train, test = tables
    digits = sum(i.isdigit() for i in train["id"])
    print(f"CSVs from {real_dir}: {len(train)} train ids ({digits} all digits), {len(test)} test ids", flush=True)

    def keyed(ids: Iterable[str], labels: Iterable[str]) -> list[tuple[str, int, int]]:
        out = []
        for i, raw in zip(ids, labels):
            tokens = [int(t) for t in raw.split() if t.isdigit()]
            out.append((i, tokens[0], tokens[-1]) if tokens else (i, -1, -1))
        return out

    return keyed(train["id"], train["attribute_ids"]), [(i, -1, -1) for i in test["id"]]


def _colour(key: int, salt: int) -> tuple[int, int, int]:
    from synth.draw import hsv_rgb_int

    return hsv_rgb_int((key if key >= 0 else salt % 997) * 0.618034, 0.6, 0.85)


def draw_image(img_id: str, first: int, last: int):
    """A tiny image, the same for the same id: 32-48 px a side, a background coloured by its first label,
    a square coloured by its last one, and some grain."""
    import numpy as np

    from synth.draw import paint_block

    h32 = zlib.crc32(img_id.encode())
    rng = np.random.default_rng(h32)
    h, w = (int(v) for v in rng.integers(IMAGE_SIDES[0], IMAGE_SIDES[1] + 1, 2))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _colour(first, h32)
    r = min(h, w) // 4
    cy, cx = h // 2 + int(rng.integers(-r, r + 1)) // 2, w // 2 + int(rng.integers(-r, r + 1)) // 2
    paint_block(img, cx, cy, r, _colour(last, h32 >> 8))
    return (img + rng.integers(0, 12, img.shape, dtype=np.uint8)).astype(np.uint8)


def _write_images(task: tuple[str, Sequence[tuple[str, int, int]]]) -> int:
    import cv2

    from synth.draw import write_png

    cv2.setNumThreads(1)  # one pool process per core
    folder, items = task
    for img_id, first, last in items:
        path = os.path.join(folder, f"{img_id}.png")
        tmp = path + ".tmp.png"
        write_png(tmp, draw_image(img_id, first, last))
        os.replace(tmp, path)  # never a truncated image that a later run would count as done
    return len(items)


def missing_images(folder: Path, ids: Iterable[str]) -> list[str]:
    have = {n[:-4] for n in os.listdir(folder) if n.endswith(".png")} if folder.is_dir() else set()
    return [i for i in ids if i not in have]


def generate_images(folder: Path, items: Sequence[tuple[str, int, int]], *, workers: int) -> int:
    """Draws the images of ``items`` that ``folder`` lacks, on ``workers`` processes; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    todo_ids = set(missing_images(folder, (i for i, _, _ in items)))
    todo = [it for it in items if it[0] in todo_ids]
    if not todo:
        return 0
    tasks = [(str(folder), todo[k : k + IMAGES_PER_TASK]) for k in range(0, len(todo), IMAGES_PER_TASK)]
    done, start, last = 0, time.time(), 0.0
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for n in pool.imap_unordered(_write_images, tasks):
            done += n
            if time.time() - last > 10 or done == len(todo):
                last = time.time()
                print(f"  {folder.name}/: {done}/{len(todo)} images drawn ({time.time() - start:.0f}s)", flush=True)
    return len(todo)


# --------------------------------------------------------------------------- running a kernel
@dataclasses.dataclass
class KernelRun:
    """One kernel process: its exit code, wall time, own peak RSS and the stage timings it printed."""

    name: str
    returncode: int
    wall_s: float
    peak_rss_mb: float
    stages: dict[str, float]
    tail: list[str]
    log: Path


def add_stage(stages: dict[str, float], line: str) -> None:
    """Adds a ``stage <name>: <seconds> s`` line to ``stages`` (a stage printed twice adds up)."""
    m = STAGE_RE.search(line)
    if m:
        stages[m.group(1)] = stages.get(m.group(1), 0.0) + float(m.group(2))


def parse_stages(lines: Iterable[str]) -> dict[str, float]:
    """Stage lines -> name -> seconds, in order of first appearance; other lines are ignored."""
    stages: dict[str, float] = {}
    for line in lines:
        add_stage(stages, line)
    return stages


def time_kernel(
    name: str, command: list[str], root: Path, *, log: Path, extra_pythonpath: Path | None = None
) -> KernelRun:
    """Runs a built kernel with ``kernel_build.run_kernel``, its output teed to the console and ``log``, and
    collects the stage lines it prints and the end of its output."""
    stages: dict[str, float] = {}
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def on_line(line: str) -> None:
        add_stage(stages, line)
        tail.append(line.rstrip("\n"))

    done = kernel_build.run_kernel(
        command, root, extra_pythonpath=extra_pythonpath, log=log, on_line=on_line, check=False
    )
    return KernelRun(
        name=name,
        returncode=done.returncode,
        wall_s=done.wall_s,
        peak_rss_mb=done.peak_rss_mb,
        stages=stages,
        tail=list(tail),
        log=log,
    )


# --------------------------------------------------------------------------- report
def _fmt(x: float | None, digits: int = 1) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def report(
    runs: Sequence[KernelRun], *, bench_rows: Sequence[tuple[str, str, float]], total_s: float, header: str = ""
) -> tuple[list[str], bool]:
    """The markdown table, the targets and the last line; and whether every target is met."""
    lines = [header, ""] if header else []
    lines += ["| kernel | stage | what | wall s | peak RSS MB |", "|---|---|---|---:|---:|"]
    for stage, what, seconds in bench_rows:
        lines.append(f"| bench | {stage} | {what} | {seconds:.1f} | |")
    for run in runs:
        labels = STAGE_LABELS.get(run.name, {})
        for stage, seconds in run.stages.items():
            lines.append(f"| {run.name} | {stage} | {labels.get(stage, stage)} | {seconds:.1f} | |")
        other = run.wall_s - sum(run.stages.values())
        lines.append(f"| {run.name} | (other) | process start, imports, work outside the stage lines | {other:.1f} | |")
        status = "" if run.returncode == 0 else f" (FAILED, exit {run.returncode})"
        lines.append(
            f"| {run.name} | **total**{status} | the whole process | {run.wall_s:.1f} | {run.peak_rss_mb:.0f} |"
        )
    lines.append(f"| all | **total** | the whole bench: images, build, both kernels | {total_s:.1f} | |")

    by_name = {r.name: r for r in runs}
    rss = {k: (by_name[k].peak_rss_mb if k in by_name else float("nan")) for k in ("train", "submit")}
    decision = by_name["submit"].stages.get("decision", float("nan")) if "submit" in by_name else float("nan")
    checks = [
        (f"train kernel peak RSS {_fmt(rss['train'], 0)} MB < {RSS_TARGET_MB:.0f} MB", rss["train"], RSS_TARGET_MB),
        (f"submit kernel peak RSS {_fmt(rss['submit'], 0)} MB < {RSS_TARGET_MB:.0f} MB", rss["submit"], RSS_TARGET_MB),
        (f"decision stage {_fmt(decision)} s < {DECISION_TARGET_S:.0f} s", decision, DECISION_TARGET_S),
    ]
    ok = True
    lines += ["", "targets:"]
    for text, value, limit in checks:
        if math.isnan(value):
            verdict = "FAIL (not measured)"
        else:
            verdict = "PASS" if value < limit else "FAIL"
        ok &= verdict == "PASS"
        lines.append(f"- {text}: {verdict}")
    for run in runs:
        if run.returncode != 0:
            ok = False
            lines += [
                "",
                f"{run.name} kernel FAILED (exit {run.returncode}); the end of {run.log}:",
                "```",
                *run.tail,
                "```",
            ]
    lines += [
        "",
        f"scale: train_peak_rss_mb={_fmt(rss['train'], 0)} submit_peak_rss_mb={_fmt(rss['submit'], 0)} "
        f"decision_s={_fmt(decision)} total_s={_fmt(total_s)}",
    ]
    return lines, ok


# --------------------------------------------------------------------------- the bench
def run_bench(args: argparse.Namespace) -> int:
    start = time.monotonic()
    work = args.work.resolve()
    data = work / "data"
    train_items, test_items, data_row = _prepare_data(args, data)

    t = time.monotonic()
    train_overrides, submit_overrides = _overrides(args)
    built = kernel_build.build(work / "build", train_overrides=train_overrides, submit_overrides=submit_overrides)
    competition = kernel_build.effective_config("train", train_overrides)["competition"]
    bench_rows = [data_row, ("build", "kernel_build.build", time.monotonic() - t)]

    runs = _run_kernels(built, work=work, data=data, competition=competition)
    total = time.monotonic() - start

    header = _header(train_overrides, submit_overrides, n_train=len(train_items), n_test=len(test_items))
    lines, ok = report(runs, bench_rows=bench_rows, total_s=total, header=header)
    text = "\n".join(lines)
    (work / "report.md").write_text(text + "\n")

    kernels_ok = all(r.returncode == 0 for r in runs)
    if kernels_ok and not args.keep:
        _remove_kernel_folders(built, work)
    print("\n" + text, flush=True)  # last, so that the summary line ends the output
    return 0 if ok else (2 if not kernels_ok else 1)


def _prepare_data(args: argparse.Namespace, data: Path) -> tuple[list, list, tuple[str, str, float]]:
    """The CSVs and the missing images in ``data``: (train items, test items, the bench's "data" row)."""
    t = time.monotonic()
    train_items, test_items = prepare_csvs(
        args.real_dir.resolve(), data, n_train=args.n_train, n_test=args.n_test, seed=args.seed
    )
    n_drawn = sum(
        generate_images(data / split, items, workers=args.workers)
        for split, items in (("train", train_items), ("test", test_items))
    )
    row = (
        "data",
        f"CSVs + {n_drawn} PNGs drawn, {len(train_items) + len(test_items) - n_drawn} reused",
        time.monotonic() - t,
    )
    return train_items, test_items, row


def _overrides(args: argparse.Namespace) -> tuple[dict, dict]:
    """(train, submit) config overrides: the local ones, the cheap model, then the command line's."""
    train_overrides = {
        **kernel_build.SCRATCH_TRAIN,
        **SCALE_TRAIN,
        "n_folds": args.n_folds,
        "folds": list(range(args.n_folds)),
        **kernel_build.parse_overrides(args.sets, "train"),
    }
    submit_overrides = {
        **kernel_build.LOCAL_SUBMIT,
        **SCALE_SUBMIT,
        "tta": args.tta,
        **kernel_build.parse_overrides(args.submit_sets, "submit"),
    }
    return train_overrides, submit_overrides


def _run_kernels(built, *, work: Path, data: Path, competition: str) -> list[KernelRun]:
    """Each train kernel, then the submit kernel on their outputs if they all succeeded."""
    runs: list[KernelRun] = []
    submit_inputs = {competition: data}
    for kernel in built.train:
        root = kernel_build.kaggle_dir(work, kernel.slug, {competition: data}, fresh=True)
        runs.append(time_kernel("train", kernel_build.runnable(kernel), root, log=work / "logs" / "train.log"))
        submit_inputs[kernel.slug] = root / "working"
    if all(r.returncode == 0 for r in runs):
        root = kernel_build.kaggle_dir(work, "submit", submit_inputs, fresh=True)
        runs.append(
            time_kernel(
                "submit",
                kernel_build.runnable(built.submit),
                root,
                log=work / "logs" / "submit.log",
                extra_pythonpath=kernel_build.blocker_dir(work),
            )
        )
    return runs


def _header(train_overrides: dict, submit_overrides: dict, *, n_train: int, n_test: int) -> str:
    """The report's first line: the images, the cores and the settings that matter."""
    shown = {
        k: v for k, v in train_overrides.items() if k in ("model", "image_size", "batch_size", "epochs", "n_folds")
    }
    return (
        f"scale rehearsal: {n_train} train / {n_test} test images "
        f"({IMAGE_SIDES[0]}-{IMAGE_SIDES[1]} px), {os.cpu_count()} cores; train "
        + ", ".join(f"{k}={v}" for k, v in shown.items())
        + f"; submit tta={submit_overrides['tta']}"
    )


def _remove_kernel_folders(built, work: Path) -> None:
    """Deletes the kernels' folders (outputs, image caches) and the build; the data stays."""
    t = time.monotonic()
    for kernel in built:
        shutil.rmtree(work / ("submit" if kernel.role == "submit" else kernel.slug), ignore_errors=True)
    shutil.rmtree(work / "build", ignore_errors=True)
    print(f"\nremoved the kernels' folders in {time.monotonic() - t:.0f}s (--keep keeps them)", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Run the built kernels on an iMet 2019-sized competition; "
        "time each stage and measure each kernel's peak RSS."
    )
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"work folder (default {DEFAULT_WORK})")
    p.add_argument(
        "--real-dir",
        type=Path,
        default=DEFAULT_REAL_DIR,
        help="folder with train.csv, labels.csv and sample_submission.csv (default: the real iMet 2019 "
        "CSVs in ../shared/data/imet2019)",
    )
    p.add_argument("--n-train", type=int, help="subsample this many train ids (default: all)")
    p.add_argument("--n-test", type=int, help="subsample this many test ids (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the subsample's seed")
    p.add_argument("--n-folds", type=int, default=5, help="folds, all trained (default 5)")
    p.add_argument("--tta", type=int, default=2, help="test-time views in the submit kernel (default 2)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another train config override, as build_kernel.py --set",
    )
    p.add_argument(
        "--set-submit",
        dest="submit_sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another submit config override, as build_kernel.py --set-submit",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes drawing the images")
    p.add_argument("--keep", action="store_true", help="keep the kernels' folders (outputs, image caches)")
    args = p.parse_args(argv)
    for name in ("train.csv", "labels.csv", "sample_submission.csv"):
        if not (args.real_dir / name).is_file():
            p.error(f"--real-dir {args.real_dir}: no {name}")
    try:
        return run_bench(args)
    except kernel_build.BuildError as e:
        print(f"bench/scale.py: build error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
