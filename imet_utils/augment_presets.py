"""What each train augmentation preset does, defined once: ``AUGMENT_PRESETS`` (``TrainConfig.augment_preset``).

A preset is a frozen list of numbers. ``imet_utils.augment`` realises it: on the CPU as an albumentations
``Compose`` (``train_transforms``), and, where the preset allows it, on the accelerator as ``DeviceAugment``
(the input pipeline crops and flips; the layer runs the affine, brightness and noise batched). Both read the
same entry, so a value changed here changes both. Adding a preset is one entry here; it needs code in
``augment`` only if it uses an operation no preset has yet.

Why two realisations and not one: the ``"seed"`` preset must reproduce the 2019 baseline notebook's pixels, which
are OpenCV warps with reflected borders and a scale, drawn per image, as albumentations computes them on the CPU;
no batched device op reproduces them. The device, in turn, needs batched Keras ops with one random draw per image
of a batch, which albumentations can't run. ``"ours"`` has both so that ``augment="device"`` (GPU) and
``augment="albumentations"`` (CPU) train the same preset: the numbers are these, the operations each library's
(Keras' rotation and translation resample with bilinear interpolation; albumentations' noise draws its standard
deviation per image). On the device path the random crop and flip are the input pipeline's, written once in
``imet_utils.pipeline`` for JPEG and PNG alike. The tests check that both realisations read these entries.

No imports beyond the standard library: the config validates names against this registry at build time.
"""

from __future__ import annotations

import dataclasses

AUGMENT_MODES = ("device", "albumentations", "none")  # where augmentation runs: TrainConfig.augment


@dataclasses.dataclass(frozen=True)
class AugmentPreset:
    """One train augmentation: a random crop and a horizontal flip, then the operations below.

    Attributes:
        help: one line for the config table.
        crop_first: crop before the affine (the affine moves the crop), or after it (the baseline's order).
        shift: translation limit, a share of the width and height.
        scale: isotropic scale limit (0: none).
        rotate: rotation limit in degrees.
        affine_p: the affine's probability per image.
        border: the affine's border: ``"constant"`` (black) or ``"reflect_101"``.
        brightness: additive brightness limit on 0..1 pixels (0: none).
        brightness_p: its probability per image.
        noise_std: Gaussian noise standard deviation on 0..1 pixels (0: none); the CPU draws it in
            ``[noise_std / 2, 1.5 noise_std]`` per image.
        noise_p: its probability per image.
    """

    help: str
    crop_first: bool
    shift: float
    scale: float
    rotate: float
    affine_p: float
    border: str
    brightness: float = 0.0
    brightness_p: float = 0.0
    noise_std: float = 0.0
    noise_p: float = 0.0

    @property
    def runs_on_device(self) -> bool:
        """``DeviceAugment`` can run it: crop first, black borders, no scale."""
        return self.crop_first and self.border == "constant" and self.scale == 0


# The 2019 baseline notebook's ShiftScaleRotate arguments; ours keeps its shift, rotation and p.
BASELINE_SHIFT = 0.1
BASELINE_ROTATE = 15
BASELINE_AFFINE_P = 0.3

AUGMENT_PRESETS: dict[str, AugmentPreset] = {
    "ours": AugmentPreset(
        help="crop, flip, then the baseline's shift and rotation without scale, black borders, brightness, noise",
        crop_first=True,
        shift=BASELINE_SHIFT,
        scale=0.0,
        rotate=BASELINE_ROTATE,
        affine_p=BASELINE_AFFINE_P,
        border="constant",
        brightness=0.2,
        brightness_p=0.3,
        noise_std=0.04,
        noise_p=0.2,
    ),
    # The value "seed" names the 2019 baseline notebook (kept: configs set it).
    "seed": AugmentPreset(
        help="the 2019 baseline notebook's transforms exactly: flip, shift-scale-rotate (reflected borders), crop",
        crop_first=False,
        shift=BASELINE_SHIFT,
        scale=0.1,
        rotate=BASELINE_ROTATE,
        affine_p=BASELINE_AFFINE_P,
        border="reflect_101",
    ),
}


def get_augment_preset(name: str) -> AugmentPreset:
    """The registered preset ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augment preset {name!r}; known: {list(AUGMENT_PRESETS)}")
    return AUGMENT_PRESETS[name]
