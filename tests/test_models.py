from pathlib import Path

import numpy as np
import pytest
from conftest import assert_loads_offline

from imet_utils.models import MODELS, create_model, get_backbone

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'effnet-b3'; known models: .*efficientnet-b3"):
        get_backbone("effnet-b3")


def test_registry_has_every_efficientnet_variant():
    assert {f"efficientnet-b{i}" for i in range(8)} <= set(MODELS)


@pytest.mark.parametrize("name", ["tiny-cnn", "small-cnn", "cnn6", "efficientnet-b0"])
def test_model_has_the_seed_head_and_uint8_input(name):
    model = create_model(name, 7, image_size=64, dropout=0.5, dense_units=512, bn_momentum=0.9)
    assert model.input.dtype == "uint8"
    assert model.get_layer("head_dense").units == 512
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.output.shape[-1] == 7 and model.output.dtype == "float32"
    probs = model(np.random.randint(0, 255, (2, 64, 64, 3), dtype=np.uint8)).numpy()
    assert probs.shape == (2, 7) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize("name", ["tiny-cnn", "small-cnn", "cnn6"])
def test_from_scratch_models_refuse_pretrained_weights(name):
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model(name, 3, image_size=32, weights="imagenet")


def test_efficientnet_export_loads_where_the_package_is_missing(tmp_path):
    model = create_model("efficientnet-b0", 5, image_size=64)
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    assert_loads_offline(model, tmp_path, x)


def test_missing_backbone_package_is_installed_with_its_pin(monkeypatch):
    import importlib.util
    import subprocess

    from imet_utils import models

    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    models.ensure_backbone_package("efficientnet-b3")
    assert calls and calls[0][-1] == "efficientnet==1.1.1" and calls[0][1:4] == ["-m", "pip", "install"]
    calls.clear()
    models.ensure_backbone_package("convnext-tiny")  # keras.applications: nothing to install
    assert calls == []
