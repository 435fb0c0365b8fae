"""submission.csv: built from decisions, checked against sample_submission, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


class SubmissionError(ValueError):
    """A submission that would score badly or not at all; the message names the id."""


def format_labels(pred: np.ndarray) -> list:
    """0/1 matrix -> space-separated attribute ids per row."""
    return [" ".join(map(str, np.flatnonzero(row))) for row in pred]


def validate_submission(sub: pd.DataFrame, sample_ids: Sequence[str], n_classes: int) -> None:
    """Same ids in the same order as sample_submission, unique, each row with >= 1 label in range.

    Raises:
        SubmissionError: naming the first offending row and id.
    """
    ids = list(sub["id"])
    expected = list(sample_ids)
    if len(ids) != len(expected):
        missing = sorted(set(expected) - set(ids))[:5]
        raise SubmissionError(
            f"submission has {len(ids)} rows, sample_submission {len(expected)}; missing e.g. {missing}"
        )
    for i, (got, want) in enumerate(zip(ids, expected)):
        if got != want:
            raise SubmissionError(f"row {i + 1}: id {got!r} where sample_submission has {want!r}")
    if sub["id"].duplicated().any():
        raise SubmissionError(f"duplicate id {sub['id'][sub['id'].duplicated()].iloc[0]!r}")
    for i, (img_id, labels) in enumerate(zip(sub["id"], sub["attribute_ids"])):
        tokens = str(labels).split()
        if not tokens:
            raise SubmissionError(f"row {i + 1}: id {img_id!r} has no label")
        for t in tokens:
            if not t.isdigit() or int(t) >= n_classes:
                raise SubmissionError(f"row {i + 1}: id {img_id!r} has label {t!r} outside 0..{n_classes - 1}")


def write_submission(sub: pd.DataFrame, path: Path, *, sample_ids: Sequence[str], n_classes: int) -> Path:
    """Validates, then writes via a temp file and rename, so a crash never leaves half a file."""
    validate_submission(sub, sample_ids, n_classes)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    sub[["id", "attribute_ids"]].to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
