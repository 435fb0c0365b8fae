"""The photographic generator modes (objects, gallery): valid iMet files that decode, deterministic bytes, a long
tail, train labels with misses that the test labels lack, a low constant floor, and each mode's own shape. No
training."""

import numpy as np
import pandas as pd
import pytest

from imet_utils.data import multi_hot, read_competition, read_train
from imet_utils.images import decode_image
from kernel_build.scoring import best_constant_f2
from synth import generate_competition, sources
from synth.cli import main as synth_cli
from synth.gallery import GALLERY_GROUPS, TAGS, WORKS
from synth.objects import CULTURES, DROP_CULTURE, DROP_SMALL, DROP_TAG, OBJECTS_GROUPS

SMALL = {
    "objects": {"n_train": 500, "n_test": 200, "min_side": 40, "max_side": 64, "seed": 2},
    "gallery": {"n_train": 500, "n_test": 200, "min_side": 48, "max_side": 64, "seed": 2},
}
GROUPS = {"objects": OBJECTS_GROUPS, "gallery": GALLERY_GROUPS}


@pytest.fixture(scope="module", params=["objects", "gallery"])
def comp(request, tmp_path_factory):
    mode = request.param
    return mode, generate_competition(tmp_path_factory.mktemp(mode), mode=mode, **SMALL[mode])


def _y(path, n):
    return multi_hot(list(read_train(path, n)["labels"]), n)


def _n(mode):
    return sum(k for _, k in GROUPS[mode]), GROUPS[mode][0][1]


def test_files_are_valid_imet_and_decode(comp):
    mode, root = comp
    competition = read_competition(root)
    n, _ = _n(mode)
    assert competition.labels.n_classes == n and competition.labels.group_names == ("culture", "tag")
    assert pd.read_csv(root / "labels.csv")["attribute_name"].is_unique
    ids = list(competition.train["id"]) + list(competition.test_ids["id"])
    assert len(set(ids)) == len(ids) == SMALL[mode]["n_train"] + SMALL[mode]["n_test"]
    assert all(isinstance(i, str) and 12 <= len(i) <= 16 for i in ids)
    assert list(read_train(root / "solution.csv", n)["id"]) == list(competition.test_ids["id"])
    assert list(read_train(root / "train_clean.csv", n)["id"]) == list(competition.train["id"])
    shapes = set()
    for split, some in (("train", competition.train["id"][:20]), ("test", competition.test_ids["id"][:20])):
        for i in some:
            img = decode_image(root / split / f"{i}.png")
            assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= SMALL[mode]["min_side"]
            assert img.std() > 5  # a scene, not a blank
            shapes.add(img.shape[:2])
    assert len(shapes) > 10  # sizes and aspects vary


def test_labels_have_a_long_tail(comp):
    mode, root = comp
    n, n_culture = _n(mode)
    clean = _y(root / "train_clean.csv", n)
    # Zipf's head over its tail (uniform labels would give about 1.5 at this size, with sampling noise).
    for group, ratio in ((clean[:, n_culture:], 5), (clean[:, :n_culture], 2.2)):
        freq = np.sort(group.mean(axis=0))[::-1]
        assert freq[:3].mean() > ratio * freq[-5:].mean() and freq[0] > 3 * freq[-1]  # few common, many rare
    assert (clean.mean(axis=0) > 0).mean() > 0.9  # the tail is thin, not empty
    assert clean[:, n_culture:].sum(axis=1).min() >= 1


def test_train_labels_miss_what_the_test_labels_keep(comp):
    mode, root = comp
    n, n_culture = _n(mode)
    noisy, clean = _y(root / "train.csv", n), _y(root / "train_clean.csv", n)
    missed = (clean == 1) & (noisy == 0)
    tag_miss = missed[:, n_culture:].sum() / clean[:, n_culture:].sum()
    assert 0.1 < tag_miss < 0.4
    assert 0.05 < missed[:, :n_culture].sum() / clean[:, :n_culture].sum() < 0.3
    assert 0.02 < ((noisy == 1) & (clean == 0)).any(axis=1).mean() < 0.15  # a few wrong extra labels
    assert noisy.sum(axis=1).min() >= 1
    # The test labels are clean: about train_clean's label count per image (within sampling noise: 200 images),
    # more than the annotated train's.
    solution = _y(root / "solution.csv", n)
    assert abs(solution.sum(axis=1).mean() - clean.sum(axis=1).mean()) < 0.6
    assert noisy.sum(axis=1).mean() < clean.sum(axis=1).mean() - 0.3
    assert solution[:, n_culture:].sum(axis=1).min() >= 1


def test_constant_floor_is_low(comp):
    mode, root = comp
    assert best_constant_f2(_y(root / "solution.csv", _n(mode)[0])) < 0.45


@pytest.mark.parametrize("mode", ["objects", "gallery"])
def test_deterministic_for_a_seed(tmp_path, mode):
    def files(seed, name):
        args = {**SMALL[mode], "n_train": 12, "n_test": 4, "seed": seed}
        out = generate_competition(tmp_path / name, mode=mode, **args)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = files(5, "a"), files(5, "b"), files(6, "c")
    assert a == b
    assert a["train.csv"] != c["train.csv"]


def test_objects_one_culture_at_most_and_small_objects_missed_more(comp):
    mode, root = comp
    if mode != "objects":
        pytest.skip("objects only")
    n, n_culture = _n(mode)
    assert pd.read_csv(root / "labels.csv")["attribute_name"].iloc[0] == f"culture::{CULTURES[0]}"
    clean, noisy = _y(root / "train_clean.csv", n), _y(root / "train.csv", n)
    per_image = clean[:, :n_culture].sum(axis=1)
    assert set(per_image) == {0, 1} and 0.05 < (per_image == 0).mean() < 0.3
    assert set(clean[:, n_culture:].sum(axis=1)) <= {1, 2, 3, 4, 5}
    missed = (clean == 1) & (noisy == 0)
    tag_miss = missed[:, n_culture:].sum() / clean[:, n_culture:].sum()
    assert DROP_TAG < tag_miss < DROP_TAG + DROP_SMALL / 2  # above the base rate: small objects
    assert DROP_CULTURE - 0.05 < missed[:, :n_culture].sum() / clean[:, :n_culture].sum() < DROP_CULTURE + 0.05


def test_gallery_tags_come_from_works_and_cultures_can_be_several(comp):
    mode, root = comp
    if mode != "gallery":
        pytest.skip("gallery only")
    n, n_culture = _n(mode)
    clean, noisy = _y(root / "train_clean.csv", n), _y(root / "train.csv", n)
    assert clean[:, :n_culture].sum(axis=1).min() == 1 and clean[:, :n_culture].sum(axis=1).max() >= 2
    assert _y(root / "solution.csv", n)[:, :n_culture].sum(axis=1).min() == 1  # every test work has its culture
    assert noisy[:, :n_culture].sum(axis=1).min() == 0  # some train images lost theirs
    work_sets = {frozenset(TAGS.index(t) for t in tags) for _, tags in WORKS}
    for row in clean[:50, n_culture:]:
        present = set(np.flatnonzero(row))
        assert present == set().union(*(s for s in work_sets if s <= present))  # a union of whole works
    # Tags co-occur through works: P(portraits | faces) is 1, far above P(portraits).
    tags = clean[:, n_culture:].astype(bool)
    faces, portraits = tags[:, TAGS.index("faces")], tags[:, TAGS.index("portraits")]
    assert faces.sum() >= 5 and portraits[faces].all() and portraits.mean() < 0.5


def test_groups_are_checked(tmp_path):
    few = {**SMALL["objects"], "n_train": 40, "n_test": 20}
    out = generate_competition(tmp_path / "few", mode="objects", groups=(("culture", 3), ("tag", 7)), **few)
    assert len(pd.read_csv(out / "labels.csv")) == 10
    assert read_train(out / "solution.csv", 10)["labels"].map(max).max() <= 9
    out = generate_competition(tmp_path / "g", mode="gallery", groups=(("culture", 4), ("tag", 6)), **few)
    assert read_train(out / "solution.csv", 10)["labels"].map(max).max() <= 9
    with pytest.raises(ValueError, match="1..45 tags"):
        generate_competition(tmp_path / "x", mode="objects", groups=(("culture", 3), ("tag", 99)), **few)
    with pytest.raises(ValueError, match="culture and tag, in that order"):
        generate_competition(tmp_path / "y", mode="gallery", groups=(("tag", 3), ("culture", 9)), **few)


def test_a_missing_source_image_is_named(monkeypatch):
    monkeypatch.setitem(sources.SOURCE_FILES, "astronaut", ("skimage", "data/no_such.png"))
    with pytest.raises(FileNotFoundError, match="no_such.png"):
        sources.load_source("astronaut")
    monkeypatch.setitem(sources.SOURCE_FILES, "astronaut", ("no_such_package_xyz", "a.png"))
    with pytest.raises(FileNotFoundError, match="no_such_package_xyz"):
        sources.load_source("astronaut")


@pytest.mark.parametrize("mode", ["objects", "gallery"])
def test_cli_writes_the_mode(tmp_path, capsys, mode):
    assert synth_cli([str(tmp_path / "o"), "--n-train", "8", "--n-test", "3", "--mode", mode]) == 0
    assert mode in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "o" / "labels.csv")) == _n(mode)[0]
