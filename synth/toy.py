"""The toy mode: easy, learnable images, for tests and fast local runs.

The culture label sets the background colour and each tag label draws its own coloured shape near the centre,
on a little grain, so a small CNN beats the constant baseline clearly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from synth.competition import (
    image_shape,
    label_names,
    make_folders,
    random_id,
    write_labels,
    write_sample_submission,
    zipf_weights,
)
from synth.draw import paint_shape, palette, write_png

SHAPES = ("circle", "square", "triangle", "ring", "cross")
LABEL_TAIL = 0.7  # the Zipf exponent of label weights within a group
GRAIN = 12.0  # the background noise's standard deviation


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


def _draw_shape(img: np.ndarray, shape: str, color: tuple, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    short = min(h, w)
    r = int(short * rng.uniform(0.10, 0.16))
    # Keep shapes near the centre, so that random and centre crops both see them.
    cy = int(h / 2 + rng.uniform(-0.25, 0.25) * short)
    cx = int(w / 2 + rng.uniform(-0.25, 0.25) * short)
    paint_shape(img, shape, cx, cy, r, color, min_bar=2)


def generate_toy(
    out: Path, *, n_train: int, n_test: int, groups: Sequence[tuple[str, int]], min_side: int, max_side: int, seed: int
) -> Path:
    """Writes a toy iMet-format competition to ``out``; the arguments are ``generate_competition``'s."""
    rng = np.random.default_rng(seed)
    out = make_folders(out)
    offsets = [sum(n for _, n in groups[:g]) for g in range(len(groups))]  # each group's first label id
    weights = [zipf_weights(n, LABEL_TAIL) for _, n in groups]
    names = label_names(groups)
    write_labels(out, names)

    first_n = groups[0][1]
    backgrounds = palette(first_n, offset=0.05, sat=0.35, val=0.85)
    n_marks = len(names) - first_n
    mark_colors = palette(max(n_marks, 1), offset=0.0, sat=0.95, val=0.75)
    used: set = set()

    def make(split: str, n: int) -> pd.DataFrame:
        rows = []
        for _ in range(n):
            img_id = random_id(rng, used)
            labels = _sample_labels(rng, groups, offsets, weights)
            h, w = image_shape(rng, min_side=min_side, max_side=max_side)
            bg = np.array(backgrounds[labels[0] % first_n] if labels[0] < first_n else (128, 128, 128), float)
            # In cv2's BGR order (paint_shape's), so the background's channels are the palette's reversed.
            img = np.clip(bg + rng.normal(0, GRAIN, (h, w, 3)), 0, 255).astype(np.uint8)
            for lab in labels:
                if lab >= first_n:
                    m = lab - first_n
                    _draw_shape(img, SHAPES[m % len(SHAPES)], mark_colors[m], rng)
            write_png(out / split / f"{img_id}.png", img[..., ::-1])
            rows.append((img_id, " ".join(map(str, labels))))
        return pd.DataFrame(rows, columns=["id", "attribute_ids"])

    make("train", n_train).to_csv(out / "train.csv", index=False)
    solution = make("test", n_test)
    solution.to_csv(out / "solution.csv", index=False)
    write_sample_submission(out, solution["id"])
    return out
