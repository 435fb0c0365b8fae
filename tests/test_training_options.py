"""Losses, backbones, training options and weighted ensembles."""

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_loads_offline

from imet_utils.budget import Budget
from imet_utils.config import ConfigError, TrainConfig, from_dict
from imet_utils.devices import setup_strategy
from imet_utils.ensemble import blend, fit_weights
from imet_utils.models import MODELS, create_model

ROOT = Path(__file__).resolve().parents[1]


def _focal_reference(y, p, gamma, alpha=None):
    """Lin et al.'s focal loss, written out plainly."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    pt = np.where(y == 1, p, 1 - p)
    w = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    return np.mean(-w * (1 - pt) ** gamma * np.log(pt), axis=-1)


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (1.0, 0.25), (0.0, None)])
def test_focal_loss_matches_the_reference_and_stays_finite(gamma, alpha):
    from imet_utils.losses import make_loss

    loss = make_loss(TrainConfig(loss="focal", focal_gamma=gamma, focal_alpha=alpha))
    rng = np.random.default_rng(0)
    y = (rng.random((16, 30)) < 0.2).astype("float32")
    p = rng.random((16, 30)).astype("float32")
    p[0, :5] = [0.0, 1.0, 1e-12, 1 - 1e-9, 0.5]  # the extremes
    got = float(loss(y, p))
    assert np.isfinite(got)
    assert got == pytest.approx(float(np.mean(_focal_reference(y, p, gamma, alpha))), rel=1e-4)


def test_unknown_options_fail_with_the_known_ones():
    from imet_utils.losses import get_loss
    from imet_utils.schedules import get_schedule

    with pytest.raises(ConfigError, match=r"unknown loss 'huber'; known: \['bce', 'focal'\]"):
        from_dict(TrainConfig, {"loss": "huber"})
    with pytest.raises(ValueError, match=r"unknown loss 'huber'; known: \['bce', 'focal'\]"):
        get_loss("huber")
    with pytest.raises(ConfigError, match=r"unknown lr_schedule 'step'; known: \['constant', 'cosine', 'plateau'\]"):
        from_dict(TrainConfig, {"lr_schedule": "step"})
    with pytest.raises(ValueError, match=r"unknown lr_schedule 'step'; known: \['constant', 'cosine', 'plateau'\]"):
        get_schedule("step")
    with pytest.raises(ConfigError, match=r"warmup_epochs must be in \[0, epochs\)"):
        from_dict(TrainConfig, {"warmup_epochs": 8})


# Pretrained backbones that need no package: keras.applications, from the registry.
KERAS_APPLICATIONS = [
    n for n, b in MODELS.items() if b.pip is None and b.weights_pip is None and b.weights_from.startswith("ImageNet")
]


def test_keras_applications_are_found_in_the_registry():
    """The list below comes from MODELS: it must hold the families the README names, or the filter broke."""
    assert {"efficientnetv2-b0", "efficientnetv2-s", "convnext-tiny"} <= set(KERAS_APPLICATIONS)
    assert not {"efficientnet-b0", "tiny-cnn"} & set(KERAS_APPLICATIONS)


@pytest.mark.parametrize("name", KERAS_APPLICATIONS)
def test_keras_application_backbones_build_with_their_preprocessing_inside(name):
    model = create_model(name, 9, image_size=32)
    assert model.get_layer("normalize") is not None and model.output.shape[-1] == 9
    out = model(np.zeros((1, 32, 32, 3), np.uint8)).numpy()
    assert out.shape == (1, 9) and np.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnetv2-b0", "convnext-tiny"])
def test_new_backbones_save_and_load_offline(name, tmp_path):
    model = create_model(name, 4, image_size=32)
    assert_loads_offline(model, tmp_path, np.random.default_rng(1).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8))


@pytest.mark.slow
def test_warmup_cosine_mixup_and_focal_train_a_fold(tmp_path, tiny_competition):
    from imet_utils import training
    from imet_utils.data import read_competition
    from imet_utils.images import build_cache

    comp = read_competition(tiny_competition)
    cached = build_cache(
        comp.train["id"], comp.train_dir, tmp_path / "cache", split="train", short_side=40, max_aspect=4.0
    )
    config = TrainConfig(
        model="tiny-cnn",
        weights=None,
        image_size=32,
        batch_size=16,
        epochs=3,
        n_folds=2,
        bn_momentum=0.9,
        mixed_precision=False,
        warmup_epochs=1,
        lr_schedule="cosine",
        mixup_alpha=0.4,
        loss="focal",
        dropout=0.3,
    )
    state = training.train_fold(
        config,
        0,
        ids=comp.train["id"].to_numpy(),
        paths=np.asarray(cached.paths),
        targets=comp.targets(),
        folds=np.arange(len(comp.train)) % 2,
        out=tmp_path / "out",
        strategy=setup_strategy(config),
        budget=Budget(1),
    )
    assert state.finished and [r["epoch"] for r in state.history] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in state.history)
    assert "val_loss" in (tmp_path / "out/fold0/history.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("loss", ["bce", "focal"])
def test_val_loss_is_the_training_loss_on_the_validation_predictions(loss):
    import keras

    from imet_utils.losses import make_loss
    from imet_utils.training import validation_loss

    rng = np.random.default_rng(2)
    y = (rng.random((5000, 12)) < 0.2).astype(np.uint8)
    p = rng.random((5000, 12)).astype(np.float32)
    config = TrainConfig(loss=loss)
    whole = float(make_loss(config)(y.astype(np.float32), p))  # one call over all rows, no chunks
    assert validation_loss(config, y, p, rows=777) == pytest.approx(whole, rel=1e-5)
    if loss == "bce":
        assert whole == pytest.approx(
            float(np.mean(keras.losses.binary_crossentropy(y.astype(np.float32), p))), rel=1e-5
        )


def test_mixup_mixes_images_and_targets_with_one_weight():
    import tensorflow as tf

    from imet_utils.pipeline import _mixup

    x = tf.constant(np.stack([np.zeros((4, 4, 3)), np.full((4, 4, 3), 200)]).astype(np.uint8))
    y = tf.constant([[1, 0], [0, 1]], tf.uint8)
    tf.random.set_seed(3)
    mx, my = _mixup(x, y, 0.4)
    lam_y = my.numpy()
    assert np.allclose(lam_y.sum(axis=1), 1.0)
    # each image's mean pixel is 200 * (its weight on the bright image), as its target says
    assert np.allclose(mx.numpy().reshape(2, -1).mean(axis=1), 200 * lam_y[:, 1], atol=1.0)


def test_blend_weights_are_non_negative_sum_to_one_and_favour_the_better_model():
    rng = np.random.default_rng(0)
    y = (rng.random((2000, 20)) < 0.1).astype(np.uint8)
    good = np.clip(y * 0.7 + rng.random(y.shape) * 0.3, 0, 1)
    bad = rng.random(y.shape)
    w = fit_weights(y, [good, bad])
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0) and w[0] > 0.8
    assert np.allclose(blend([good, bad], [1.0, 0.0]), good, atol=1e-6)
    assert fit_weights(y, [good]).tolist() == [1.0]


def test_a_loss_and_a_schedule_registered_in_one_entry_are_picked_up_everywhere(monkeypatch):
    import keras

    from imet_utils import losses, schedules
    from imet_utils.training import validation_loss

    monkeypatch.setitem(
        losses.LOSSES, "mse", losses.LossSpec("mean squared error", lambda c: keras.losses.MeanSquaredError())
    )
    step = schedules.Schedule(
        "a tenth after epoch 1", lambda c: [keras.callbacks.LearningRateScheduler(lambda e: c.lr / 10)]
    )
    monkeypatch.setitem(schedules.LR_SCHEDULES, "tenth", step)
    config = from_dict(TrainConfig, {"loss": "mse", "lr_schedule": "tenth"})  # the config knows both names
    y, p = np.array([[1, 0]], np.uint8), np.array([[0.5, 0.5]], np.float32)
    assert validation_loss(config, y, p) == pytest.approx(0.25)  # the training code builds the registered loss
    (callback,) = schedules.lr_callbacks(config)
    assert callback.schedule(3) == pytest.approx(config.lr / 10)
    from kernel_build.settings import config_table

    table = config_table("train")  # the generated tables and --set help list them with their help
    assert "'mse': mean squared error" in table and "'tenth': a tenth after epoch 1" in table
