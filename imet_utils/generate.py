"""A generator of small iMet-format competitions, for local runs and tests.

Writes labels.csv, train.csv, sample_submission.csv, train/<id>.png and
test/<id>.png, plus solution.csv (the test labels, which no kernel reads) so a
local run can score its submission. Images vary in size and aspect; their content
is learnable: the culture label sets the background colour, each tag label draws
its own coloured shape, so a small CNN beats the constant baseline clearly.

Two modes: ``toy`` (this function's default, above: fast, for tests) and ``realistic``
(``imet_utils.realistic``: cluttered textured scenes, a long tail fitted to iMet 2019, co-occurring labels
and noisy train labels, so a plain CNN sits well below the ceiling as on the real data), which is what
``build_kernel.py --run-local`` generates without ``--data-dir`` (``kernel_build.local.LOCAL_DATA``).

CLI: ``python -m imet_utils.generate OUT [--n-train 1000] [--n-test 200] [--groups culture:6,tag:14]
[--mode toy|realistic]``
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

IMET_2019_GROUPS = (("culture", 6), ("tag", 14))
IMET_2020_GROUPS = (("country", 3), ("culture", 6), ("dimension", 2), ("medium", 8), ("tags", 8))
SHAPES = ("circle", "square", "triangle", "ring", "cross")
MODES = ("toy", "realistic")


def _palette(n: int, offset: float, sat: float, val: float) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((offset + i / n) % 1.0, sat, val)) for i in range(n)]


def random_id(rng: np.random.Generator, used: set) -> str:
    while True:
        n = int(rng.integers(12, 17))
        if rng.random() < 0.03:  # some real ids are all digits, some with a leading zero
            s = "0" + "".join(rng.choice(list("0123456789"), n - 1))
        else:
            s = "".join(rng.choice(list("0123456789abcdef"), n))
        if s not in used:
            used.add(s)
            return s


def _draw_shape(img: np.ndarray, shape: str, color, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    short = min(h, w)
    r = int(short * rng.uniform(0.10, 0.16))
    # Keep shapes near the centre, so that random and centre crops both see them.
    cy = int(h / 2 + rng.uniform(-0.25, 0.25) * short)
    cx = int(w / 2 + rng.uniform(-0.25, 0.25) * short)
    paint_shape(img, shape, cx, cy, r, tuple(int(v) for v in color), min_bar=2)


def paint_shape(img: np.ndarray, shape: str, cx: int, cy: int, r: int, color: tuple, *, min_bar: int) -> None:
    """Draws one filled ``shape`` (circle, square, triangle, diamond, ring; else a cross, its bars at least
    ``min_bar`` thick) of radius ``r`` at (cx, cy) in RGB ``color``; both generator modes draw with it."""
    c = color[::-1]  # cv2 draws BGR
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, c, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), c, -1)
    elif shape in ("triangle", "diamond"):
        pts = (
            [[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]]
            if shape == "triangle"
            else [[cx, cy - r], [cx - r, cy], [cx, cy + r], [cx + r, cy]]
        )
        cv2.fillPoly(img, [np.array(pts, dtype=np.int32)], c)
    elif shape == "ring":
        cv2.circle(img, (cx, cy), r, c, max(2, r // 3))
    else:
        t = max(min_bar, r // 3)
        cv2.rectangle(img, (cx - r, cy - t), (cx + r, cy + t), c, -1)
        cv2.rectangle(img, (cx - t, cy - r), (cx + t, cy + r), c, -1)


def _sample_labels(
    rng: np.random.Generator, groups: Sequence[tuple[str, int]], offsets: list[int], weights: list[np.ndarray]
) -> list[int]:
    labels: list[int] = []
    for g, ((_name, n), off, w) in enumerate(zip(groups, offsets, weights)):
        if g == 0:
            k = 1  # the first group (culture in 2019) has exactly one label
        else:
            k = int(rng.choice([0, 1, 1, 2, 2, 3])) if len(groups) == 2 else int(rng.choice([0, 0, 1, 1, 2]))
        labels.extend(off + int(i) for i in rng.choice(n, size=min(k, n), replace=False, p=w))
    return sorted(set(labels))


def generate_competition(
    out: Path,
    *,
    n_train: int = 1000,
    n_test: int = 200,
    groups: Sequence[tuple[str, int]] | None = None,
    min_side: int = 72,
    max_side: int = 160,
    seed: int = 0,
    mode: str = "toy",
) -> Path:
    """Writes a small iMet-format competition to ``out``.

    Args:
        out: folder to create.
        n_train: train images.
        n_test: test images (ids in sample_submission.csv).
        groups: (group name, number of labels) in labels.csv order; None: the mode's default.
        min_side: smallest image short side, px.
        max_side: largest image side, px.
        seed: makes the data deterministic.
        mode: ``toy`` (easy, learnable) or ``realistic`` (see ``imet_utils.realistic``; ``groups`` then
            defaults to ``REALISTIC_GROUPS``, and it also writes ``train_clean.csv``).

    Returns:
        ``out``.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "realistic":
        from imet_utils.realistic import REALISTIC_GROUPS, generate_realistic

        return generate_realistic(
            out,
            n_train=n_train,
            n_test=n_test,
            min_side=min_side,
            max_side=max_side,
            groups=REALISTIC_GROUPS if groups is None else groups,
            seed=seed,
        )
    groups = IMET_2019_GROUPS if groups is None else groups
    rng = np.random.default_rng(seed)
    out = Path(out)
    for sub in ("train", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names, offsets, weights = [], [], []
    for name, n in groups:
        offsets.append(len(names))
        names.extend(f"{name}::synthetic {name} {i}" for i in range(n))
        w = 1.0 / np.arange(1, n + 1) ** 0.7  # a long tail, as in iMet
        weights.append(w / w.sum())
    pd.DataFrame({"attribute_id": range(len(names)), "attribute_name": names}).to_csv(out / "labels.csv", index=False)

    first_n = groups[0][1]
    backgrounds = _palette(first_n, 0.05, 0.35, 0.85)
    n_marks = len(names) - first_n
    mark_colors = _palette(max(n_marks, 1), 0.0, 0.95, 0.75)
    used: set = set()

    def make(split: str, n: int) -> pd.DataFrame:
        rows = []
        for _ in range(n):
            img_id = random_id(rng, used)
            labels = _sample_labels(rng, groups, offsets, weights)
            short = int(rng.integers(min_side, max_side * 3 // 4))
            long_ = int(min(max_side * 2, short * rng.uniform(1.0, 2.0)))
            h, w = (short, long_) if rng.random() < 0.5 else (long_, short)
            bg = np.array(backgrounds[labels[0] % first_n] if labels[0] < first_n else (128, 128, 128), float)
            img = np.clip(bg + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
            for lab in labels:
                if lab >= first_n:
                    m = lab - first_n
                    _draw_shape(img, SHAPES[m % len(SHAPES)], mark_colors[m], rng)
            cv2.imwrite(str(out / split / f"{img_id}.png"), img)
            rows.append((img_id, " ".join(map(str, labels))))
        return pd.DataFrame(rows, columns=["id", "attribute_ids"])

    make("train", n_train).to_csv(out / "train.csv", index=False)
    solution = make("test", n_test)
    solution.to_csv(out / "solution.csv", index=False)
    pd.DataFrame({"id": solution["id"], "attribute_ids": "0 1 2"}).to_csv(out / "sample_submission.csv", index=False)
    return out


def _parse_groups(text: str) -> tuple[tuple[str, int], ...]:
    return tuple((name, int(n)) for name, n in (part.split(":") for part in text.split(",")))


def generate_cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m imet_utils.generate", description="Write a small iMet-format competition."
    )
    p.add_argument("out", type=Path)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument(
        "--groups",
        type=_parse_groups,
        default=None,
        help="name:count,... e.g. culture:6,tag:14 (2020 style: country:3,culture:6,dimension:2,"
        "medium:8,tags:8); default: culture:6,tag:14 (toy), culture:10,tag:28 (realistic)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="toy",
        help="toy (easy) or realistic (cluttered, long-tailed, noisy train labels)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    generate_competition(
        args.out, n_train=args.n_train, n_test=args.n_test, groups=args.groups, seed=args.seed, mode=args.mode
    )
    print(f"wrote a {args.mode} competition of {args.n_train} train and {args.n_test} test images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(generate_cli())
