"""The photographic generator modes (objects): valid iMet files that decode, deterministic bytes, a long tail,
train labels with misses that the test labels lack, and a low constant floor. No training."""

import numpy as np
import pandas as pd
import pytest

from imet_utils.data import multi_hot, read_competition, read_train
from imet_utils.images import decode_image
from kernel_build.scoring import best_constant_f2
from synth import generate_competition, sources
from synth.cli import main as synth_cli
from synth.objects import CULTURES, DROP_CULTURE, DROP_SMALL, DROP_TAG, OBJECTS_GROUPS

SMALL = {"n_train": 500, "n_test": 200, "min_side": 40, "max_side": 64, "seed": 2}


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    return generate_competition(tmp_path_factory.mktemp("objects"), mode="objects", **SMALL)


def _y(path, n):
    return multi_hot(list(read_train(path, n)["labels"]), n)


def test_files_are_valid_imet_and_decode(objects):
    comp = read_competition(objects)
    n = comp.labels.n_classes
    assert n == sum(k for _, k in OBJECTS_GROUPS) and comp.labels.group_names == ("culture", "tag")
    names = pd.read_csv(objects / "labels.csv")["attribute_name"]
    assert names.iloc[0] == f"culture::{CULTURES[0]}" and names.is_unique
    ids = list(comp.train["id"]) + list(comp.test_ids["id"])
    assert len(set(ids)) == len(ids) == SMALL["n_train"] + SMALL["n_test"]
    assert all(isinstance(i, str) and 12 <= len(i) <= 16 for i in ids)
    assert list(read_train(objects / "solution.csv", n)["id"]) == list(comp.test_ids["id"])
    assert list(read_train(objects / "train_clean.csv", n)["id"]) == list(comp.train["id"])
    for split, some in (("train", comp.train["id"][:20]), ("test", comp.test_ids["id"][:20])):
        for i in some:
            img = decode_image(objects / split / f"{i}.png")
            assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= SMALL["min_side"]
            assert img.std() > 5  # a scene, not a blank


def test_tags_have_a_long_tail_and_one_culture_at_most(objects):
    n = read_competition(objects).labels.n_classes
    n_culture = OBJECTS_GROUPS[0][1]
    clean = _y(objects / "train_clean.csv", n)
    tags = np.sort(clean[:, n_culture:].mean(axis=0))[::-1]
    assert tags[:3].mean() > 8 * tags[-10:].mean()  # a few common tags, many rare
    assert (tags > 0).mean() > 0.9  # the tail is thin, not empty
    per_image = clean[:, :n_culture].sum(axis=1)
    assert set(per_image) == {0, 1} and 0.05 < (per_image == 0).mean() < 0.3
    assert set(clean[:, n_culture:].sum(axis=1)) <= {1, 2, 3, 4, 5}


def test_train_labels_miss_what_the_test_labels_keep(objects):
    n = read_competition(objects).labels.n_classes
    n_culture = OBJECTS_GROUPS[0][1]
    noisy, clean = _y(objects / "train.csv", n), _y(objects / "train_clean.csv", n)
    missed = (clean == 1) & (noisy == 0)
    tag_miss = missed[:, n_culture:].sum() / clean[:, n_culture:].sum()
    culture_miss = missed[:, :n_culture].sum() / clean[:, :n_culture].sum()
    assert DROP_TAG < tag_miss < DROP_TAG + DROP_SMALL / 2  # small objects are missed more often
    assert DROP_CULTURE - 0.05 < culture_miss < DROP_CULTURE + 0.05
    assert noisy.sum(axis=1).min() >= 1
    # The test labels are the clean ones: no image without a tag, and the same label shape as train_clean.
    solution = _y(objects / "solution.csv", n)
    assert solution[:, n_culture:].sum(axis=1).min() >= 1
    assert abs(solution.sum(axis=1).mean() - clean.sum(axis=1).mean()) < 0.3
    assert noisy.sum(axis=1).mean() < clean.sum(axis=1).mean() - 0.3


def test_constant_floor_is_low(objects):
    n = read_competition(objects).labels.n_classes
    assert best_constant_f2(_y(objects / "solution.csv", n)) < 0.4


def test_deterministic_for_a_seed(tmp_path):
    def files(seed, name):
        args = {**SMALL, "n_train": 12, "n_test": 4, "seed": seed}
        out = generate_competition(tmp_path / name, mode="objects", **args)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = files(5, "a"), files(5, "b"), files(6, "c")
    assert a == b
    assert a["train.csv"] != c["train.csv"]


def test_groups_are_checked(tmp_path):
    few = {**SMALL, "n_train": 40, "n_test": 20}
    out = generate_competition(tmp_path / "few", mode="objects", groups=(("culture", 3), ("tag", 7)), **few)
    assert len(pd.read_csv(out / "labels.csv")) == 10
    assert read_train(out / "solution.csv", 10)["labels"].map(max).max() <= 9
    with pytest.raises(ValueError, match="1..45 tags"):
        generate_competition(tmp_path / "x", mode="objects", groups=(("culture", 3), ("tag", 99)), **SMALL)
    with pytest.raises(ValueError, match="culture and tag, in that order"):
        generate_competition(tmp_path / "y", mode="objects", groups=(("tag", 3), ("culture", 9)), **SMALL)


def test_a_missing_source_image_is_named(monkeypatch):
    monkeypatch.setitem(sources.SOURCE_FILES, "astronaut", ("skimage", "data/no_such.png"))
    with pytest.raises(FileNotFoundError, match="no_such.png"):
        sources.load_source("astronaut")
    monkeypatch.setitem(sources.SOURCE_FILES, "astronaut", ("no_such_package_xyz", "a.png"))
    with pytest.raises(FileNotFoundError, match="no_such_package_xyz"):
        sources.load_source("astronaut")


def test_cli_writes_the_mode(tmp_path, capsys):
    assert synth_cli([str(tmp_path / "o"), "--n-train", "8", "--n-test", "3", "--mode", "objects"]) == 0
    assert "objects" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "o" / "labels.csv")) == sum(k for _, k in OBJECTS_GROUPS)
