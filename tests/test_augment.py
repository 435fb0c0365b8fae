"""Augmentation presets: the 2019 baseline notebook's transforms exactly (preset "seed"), ours named as ours, small
images scaled up first, and both realisations (albumentations, DeviceAugment) read one registry entry."""

import ast
import dataclasses
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest

from imet_utils.augment import DeviceAugment, _affine, augment_image, train_transforms
from imet_utils.augment_presets import AUGMENT_PRESETS, AugmentPreset
from imet_utils.config import ConfigError, TrainConfig, from_dict
from imet_utils.images import scale_up_to

ROOT = Path(__file__).resolve().parents[1]


def _transforms(size, preset):
    return list(train_transforms(size, preset).transforms)


def test_seed_preset_is_the_baseline_flip_then_shift_scale_rotate_then_crop_with_its_values():
    flip, affine, crop = _transforms(288, "seed")  # exactly three, in this order: the affine before the crop
    assert type(flip) is A.HorizontalFlip and flip.p == 0.5
    assert type(affine) is A.Affine and affine.p == 0.3
    assert affine.translate_percent == {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
    assert affine.scale == {"x": (0.9, 1.1), "y": (0.9, 1.1)} and affine.keep_ratio and not affine.balanced_scale
    assert affine.rotate == (-15, 15) and affine.shear == {"x": (0, 0), "y": (0, 0)}
    assert affine.border_mode == cv2.BORDER_REFLECT_101 and affine.interpolation == cv2.INTER_LINEAR
    assert not affine.fit_output
    assert type(crop) is A.RandomCrop and (crop.height, crop.width) == (288, 288) and crop.p == 1.0


@pytest.mark.parametrize("preset", ["seed", "ours"])
def test_no_baseline_transform_changes_brightness_or_adds_noise_and_ours_does(preset):
    names = [type(t).__name__ for t in _transforms(64, preset)]
    colour = [n for n in names if "Brightness" in n or "Noise" in n]
    if preset == "seed":
        assert colour == [], names
    else:
        assert colour == ["RandomBrightnessContrast", "GaussNoise"], names


def test_ours_crops_first_and_fills_borders_black():
    crop, flip, affine, brightness, noise = _transforms(64, "ours")
    assert [type(t) for t in (crop, flip, affine)] == [A.RandomCrop, A.HorizontalFlip, A.Affine]
    assert affine.border_mode == cv2.BORDER_CONSTANT and affine.scale == {"x": (1.0, 1.0), "y": (1.0, 1.0)}
    assert (affine.translate_percent["x"], affine.rotate, affine.p) == ((-0.1, 0.1), (-15, 15), 0.3)
    assert brightness.brightness_limit == (-0.2, 0.2) and brightness.contrast_limit == (0, 0)
    assert (brightness.p, noise.p) == (0.3, 0.2)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown augment preset 'lopuhin'; known: \['ours', 'seed'\]"):
        train_transforms(64, "lopuhin")


def _shift_scale_rotate_0x(img, angle, scale, dx, dy, *, centre, whole_pixel_shift):
    """albumentations 0.x's shift_scale_rotate: getRotationMatrix2D about the centre, plus the shift."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(centre(w, h), angle, scale)
    shift_x, shift_y = dx * w, dy * h
    if whole_pixel_shift:
        shift_x, shift_y = int(shift_x), int(shift_y)
    m[0, 2] += shift_x
    m[1, 2] += shift_y
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


@pytest.mark.parametrize("angle,scale,dx,dy", [(10, 1.05, 0.05, -0.1), (-15, 0.9, 0.1, 0.1), (7, 1.1, 0.033, 0.071)])
def test_baseline_affine_is_albumentations_0x_shift_scale_rotate_to_under_a_pixel(angle, scale, dx, dy):
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (12, 16, 3)).astype(np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
    affine = _affine(A, AUGMENT_PRESETS["seed"])
    # pin the random draws; border, interpolation, keep_ratio and shear stay the "seed" preset's
    affine.rotate, affine.p = (angle, angle), 1.0
    affine.scale = {"x": (scale, scale), "y": (scale, scale)}
    affine.translate_percent = {"x": (dx, dx), "y": (dy, dy)}
    out = affine(image=img)["image"].astype(int)
    # Equal to 0.x's formula with the two documented sub-pixel differences...
    same = _shift_scale_rotate_0x(
        img, angle, scale, dx, dy, centre=lambda w, h: ((w - 1) / 2, (h - 1) / 2), whole_pixel_shift=True
    )
    assert np.abs(out - same).max() <= 1
    # ...so close to 0.x's own output, and far from the opposite rotation.
    baseline = _shift_scale_rotate_0x(
        img, angle, scale, dx, dy, centre=lambda w, h: (w / 2, h / 2), whole_pixel_shift=False
    )
    mirrored = _shift_scale_rotate_0x(
        img, -angle, scale, dx, dy, centre=lambda w, h: (w / 2, h / 2), whole_pixel_shift=False
    )
    assert np.abs(out - baseline).mean() < 6 < np.abs(out - mirrored).mean()


def test_albumentations_2_shift_scale_rotate_stretches_so_the_baseline_preset_uses_affine():
    with pytest.warns(UserWarning, match="ShiftScaleRotate"):
        ssr = A.ShiftScaleRotate(shift_limit=0.1, rotate_limit=15, border_mode=cv2.BORDER_REFLECT_101, p=0.3)
    assert not ssr.keep_ratio  # x and y scales drawn apart: not 0.x's one isotropic scale


@pytest.mark.parametrize("preset", ["seed", "ours"])
@pytest.mark.parametrize("shape", [(20, 30), (300, 8), (48, 48), (50, 400)])
def test_images_smaller_than_the_crop_are_scaled_up_never_a_crash(preset, shape):
    img = np.random.default_rng(1).integers(0, 255, shape + (3,), dtype=np.uint8)
    out = augment_image(train_transforms(48, preset), img, 48)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "shape,size,expected",
    [((20, 30), 48, (48, 72)), ((300, 8), 48, (1800, 48)), ((64, 200), 48, (64, 200)), ((47, 47), 48, (48, 48))],
)
def test_scale_up_to_raises_the_short_side_to_the_crop_keeping_the_aspect(shape, size, expected):
    assert scale_up_to(np.zeros(shape + (3,), np.uint8), size).shape == expected + (3,)


def _internal_imports(module: str) -> set:
    tree = ast.parse((ROOT / "imet_utils" / f"{module}.py").read_text())
    return {
        n.module.split(".")[1]
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("imet_utils.")
    }


def test_the_pipeline_and_what_it_imports_never_import_augment():
    """Kernels inline what pipeline.py imports; its test-time views need neither albumentations nor DeviceAugment
    (the config reads the presets' names from augment_presets, which imports nothing)."""
    seen, todo = set(), ["pipeline"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_internal_imports(module))
    assert "augment" not in seen, seen


def test_augment_presets_import_nothing_but_the_standard_library():
    """The config, and so the build, imports the registry: it must not pull in albumentations, OpenCV or Keras."""
    tree = ast.parse((ROOT / "imet_utils" / "augment_presets.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses"}, imported


def test_device_augment_reads_ours_from_the_registry():
    ours = AUGMENT_PRESETS["ours"]
    layer = DeviceAugment.for_preset("ours")
    got = layer.get_config()
    assert (got["rotate"], got["shift"], got["p_affine"]) == (ours.rotate, ours.shift, ours.affine_p)
    assert (got["brightness"], got["p_brightness"]) == (ours.brightness, ours.brightness_p)
    assert (got["noise"], got["p_noise"]) == (ours.noise_std, ours.noise_p)
    assert DeviceAugment().get_config()["rotate"] == ours.rotate  # the defaults are ours too
    from imet_utils.models import create_model

    model = create_model("tiny-cnn", 3, image_size=32, device_augment=True)  # the factory puts it in the model
    assert model.get_layer("augment").get_config()["noise"] == ours.noise_std
    with pytest.raises(ValueError, match="'seed' can't run on the device"):
        DeviceAugment.for_preset("seed")


_MILD = AugmentPreset(
    help="a preset registered in one entry",
    crop_first=True,
    shift=0.05,
    scale=0.0,
    rotate=5,
    affine_p=0.5,
    border="constant",
    brightness=0.1,
    brightness_p=0.5,
)


def test_a_preset_registered_in_one_entry_is_picked_up_everywhere(monkeypatch):
    monkeypatch.setitem(AUGMENT_PRESETS, "mild", _MILD)
    assert from_dict(TrainConfig, {"augment_preset": "mild"}).augment_preset == "mild"  # the config knows it
    crop, flip, affine, brightness = _transforms(32, "mild")  # the CPU realisation: no noise, as registered
    assert affine.rotate == (-5, 5) and affine.p == 0.5 and brightness.brightness_limit == (-0.1, 0.1)
    assert DeviceAugment.for_preset("mild").get_config()["rotate"] == 5  # and the device's
    reflect = dataclasses.replace(_MILD, border="reflect_101")
    monkeypatch.setitem(AUGMENT_PRESETS, "mild", reflect)
    with pytest.raises(ConfigError, match="runs on the CPU only"):
        from_dict(TrainConfig, {"augment_preset": "mild"})  # augment='device' can't run it
    assert from_dict(TrainConfig, {"augment_preset": "mild", "augment": "albumentations"})


def test_unknown_preset_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown augment_preset 'lopuhin'; known: \['ours', 'seed'\]"):
        from_dict(TrainConfig, {"augment_preset": "lopuhin"})
