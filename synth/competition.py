"""What every generator mode uses the same way: the folders, image ids and sizes, label weights, labels.csv and
sample_submission.csv."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# The iMet label groups, in labels.csv order: (group name, number of generated labels).
IMET_2019_GROUPS = (("culture", 6), ("tag", 14))
IMET_2020_GROUPS = (("country", 3), ("culture", 6), ("dimension", 2), ("medium", 8), ("tags", 8))


def make_folders(out: Path) -> Path:
    """``out`` with its ``train`` and ``test`` image folders."""
    out = Path(out)
    for sub in ("train", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    return out


def label_names(groups: Sequence[tuple[str, int]]) -> list[str]:
    """labels.csv's names, ``group::synthetic group i``, group by group."""
    return [f"{name}::synthetic {name} {i}" for name, n in groups for i in range(n)]


def write_labels(out: Path, names: Sequence[str]) -> None:
    pd.DataFrame({"attribute_id": range(len(names)), "attribute_name": names}).to_csv(out / "labels.csv", index=False)


def write_sample_submission(out: Path, test_ids: Sequence[str]) -> None:
    """sample_submission.csv as Kaggle's: every test id, with the same placeholder labels."""
    pd.DataFrame({"id": test_ids, "attribute_ids": "0 1 2"}).to_csv(out / "sample_submission.csv", index=False)


def write_label_tables(out: Path, train: dict, test: dict) -> None:
    """The CSVs of a generated competition whose rows are ``{"id", "clean", "noisy"}`` lists (label indices per
    image): train.csv (the noisy labels a model learns from), train_clean.csv, solution.csv (the test images' clean
    labels, for local scoring) and sample_submission.csv."""

    def table(ids, labels) -> pd.DataFrame:
        return pd.DataFrame({"id": ids, "attribute_ids": [" ".join(map(str, x)) for x in labels]})

    table(train["id"], train["noisy"]).to_csv(out / "train.csv", index=False)
    table(train["id"], train["clean"]).to_csv(out / "train_clean.csv", index=False)
    table(test["id"], test["clean"]).to_csv(out / "solution.csv", index=False)
    write_sample_submission(out, test["id"])


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Normalised Zipf weights ``1 / rank**exponent`` for ranks 1..n: a long tail, as iMet's label counts."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def random_id(rng: np.random.Generator, used: set) -> str:
    """A new hex id of 12-16 characters, as iMet's; some are all digits, a few with a leading zero."""
    while True:
        n = int(rng.integers(12, 17))
        if rng.random() < 0.03:  # some real ids are all digits, some with a leading zero
            s = "0" + "".join(rng.choice(list("0123456789"), n - 1))
        else:
            s = "".join(rng.choice(list("0123456789abcdef"), n))
        if s not in used:
            used.add(s)
            return s


def image_shape(rng: np.random.Generator, *, min_side: int, max_side: int) -> tuple[int, int]:
    """(height, width) of one image: a short side from ``min_side``, an aspect of 1 to 2, either orientation."""
    short = int(rng.integers(min_side, max_side * 3 // 4))
    long_ = int(min(max_side * 2, short * rng.uniform(1.0, 2.0)))
    return (short, long_) if rng.random() < 0.5 else (long_, short)
