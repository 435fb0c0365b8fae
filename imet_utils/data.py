"""Competition CSVs: labels.csv, train.csv, sample_submission.csv.

Ids are always strings (some real ids are all digits, with leading zeros). Class
count and groups come from labels.csv. Every bad row fails with the file, the line
and the value, before any training starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

GROUP_SEPARATOR = "::"


class CsvError(ValueError):
    """A competition CSV has a bad row; the message names file, line and value."""


@dataclasses.dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]  # attribute_name by attribute_id
    groups: tuple[str, ...]  # group of each attribute, e.g. "culture"

    @property
    def n_classes(self) -> int:
        return len(self.names)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.groups))

    def group_index(self) -> dict[str, np.ndarray]:
        """Group name -> the attribute ids in it."""
        groups = np.asarray(self.groups)
        return {g: np.flatnonzero(groups == g) for g in self.group_names}


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CsvError(f"{path}: file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CsvError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    for c in required:
        df[c] = df[c].str.strip()
    return df


def _line(i: int) -> int:
    return i + 2  # header is line 1


def read_labels(path: Path) -> Labels:
    """Reads labels.csv (attribute_id, attribute_name); ids must be 0..n-1 in order."""
    df = _read_csv(path, ["attribute_id", "attribute_name"])
    if df.empty:
        raise CsvError(f"{path}: no labels")
    for i, raw in enumerate(df["attribute_id"]):
        if not raw.isdigit() or int(raw) != i:
            raise CsvError(f"{path}:{_line(i)}: attribute_id {raw!r}; ids must be 0..n-1 in order, expected {i}")
    names = tuple(df["attribute_name"])
    groups = tuple(n.split(GROUP_SEPARATOR, 1)[0] if GROUP_SEPARATOR in n else "other" for n in names)
    return Labels(names=names, groups=groups)


def _check_ids(path: Path, ids: pd.Series) -> None:
    for i, v in enumerate(ids):
        if not v:
            raise CsvError(f"{path}:{_line(i)}: empty id")
    dup = ids.duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((ids == ids.iloc[i]).to_numpy())[0])
        raise CsvError(f"{path}:{_line(i)}: duplicate id {ids.iloc[i]!r} (first on line {_line(first)})")


def read_train(path: Path, n_classes: int) -> pd.DataFrame:
    """Reads train.csv into columns ``id`` (str) and ``labels`` (list of int).

    Raises:
        CsvError: duplicate id, empty label list, non-integer label, or a label
            not in labels.csv, naming the file, line and value.
    """
    df = _read_csv(path, ["id", "attribute_ids"])
    _check_ids(path, df["id"])
    parsed: list[list[int]] = []
    for i, (img_id, raw) in enumerate(zip(df["id"], df["attribute_ids"])):
        tokens = raw.split()
        if not tokens:
            raise CsvError(f"{path}:{_line(i)}: id {img_id!r} has an empty attribute_ids list")
        row = []
        for t in tokens:
            if not t.isdigit():
                raise CsvError(f"{path}:{_line(i)}: id {img_id!r} has non-integer attribute id {t!r}")
            v = int(t)
            if v >= n_classes:
                raise CsvError(
                    f"{path}:{_line(i)}: id {img_id!r} has attribute id {v}, not in labels.csv (0..{n_classes - 1})"
                )
            row.append(v)
        parsed.append(sorted(set(row)))
    return pd.DataFrame({"id": df["id"].to_numpy(), "labels": parsed})


def read_sample_submission(path: Path) -> pd.DataFrame:
    """Reads sample_submission.csv; only its ids (and their order) matter."""
    df = _read_csv(path, ["id"])
    _check_ids(path, df["id"])
    return df[["id"]].reset_index(drop=True)


def multi_hot(label_lists: list[list[int]], n_classes: int) -> np.ndarray:
    """List of label lists -> (n, n_classes) uint8 matrix."""
    y = np.zeros((len(label_lists), n_classes), dtype=np.uint8)
    rows = np.repeat(np.arange(len(label_lists)), [len(x) for x in label_lists])
    cols = np.fromiter((c for x in label_lists for c in x), dtype=np.int64, count=len(rows))
    y[rows, cols] = 1
    return y


@dataclasses.dataclass
class Competition:
    """The competition folder: labels, train table and test ids."""

    root: Path
    labels: Labels
    train: pd.DataFrame
    test_ids: pd.DataFrame

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    def targets(self) -> np.ndarray:
        return multi_hot(list(self.train["labels"]), self.labels.n_classes)

    def targets_for(self, ids: Sequence[str]) -> np.ndarray:
        """The 0/1 targets of these train ids, in their order.

        Raises:
            KeyError: naming ids that are not in train.csv.
        """
        rows = pd.Index(self.train["id"]).get_indexer(list(ids))
        if (rows < 0).any():
            missing = [i for i, r in zip(ids, rows) if r < 0]
            raise KeyError(f"{len(missing)} id(s) not in {self.root / 'train.csv'}, e.g. {missing[:5]}")
        return multi_hot([self.train["labels"].iat[r] for r in rows], self.labels.n_classes)


def read_competition(root: Path) -> Competition:
    """Reads and checks all three CSVs of an iMet-format folder."""
    root = Path(root)
    labels = read_labels(root / "labels.csv")
    train = read_train(root / "train.csv", labels.n_classes)
    test_ids = read_sample_submission(root / "sample_submission.csv")
    return Competition(root=root, labels=labels, train=train, test_ids=test_ids)
