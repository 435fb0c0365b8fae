"""Train-time augmentation: ours (the default) and the seed's, exactly.

What (``TrainConfig.augment_preset``):
- ``"ours"`` (default): horizontal flip; an affine with the seed's shift (±0.1), rotation (±15°) and p (0.3),
  but no scale and black borders; brightness ±0.2 (p 0.3) and Gaussian noise (p 0.2), which the seed had
  commented out; and the crop comes first, so the affine moves the crop, not the whole image.
- ``"seed"``: the seed notebook's transforms and values, in its order (albumentations 0.x there, 2.x here):
  HorizontalFlip, ShiftScaleRotate(shift 0.1, scale 0.1, rotate 15, reflected borders, p 0.3), RandomCrop.
  No brightness, no noise (the seed's RandomBrightness and IAAAdditiveGaussianNoise were commented out).

Where (``TrainConfig.augment``):
- ``"device"`` (default, ours only): the input pipeline crops and flips (cheap, and a JPEG is decoded only
  inside its crop window); ``DeviceAugment``, the model's first layer after rescaling, runs the rest batched
  on the accelerator. It is the identity at inference, so exported models are unaffected.
- ``"albumentations"``: the preset's ``train_transforms`` per image on the CPU.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
from keras import layers, ops

from imet_utils.config import AUGMENT_PRESETS
from imet_utils.images import scale_up_to

# The seed's train augmentation (its ShiftScaleRotate's own arguments, and albumentations 0.x's defaults
# for the rest: scale_limit 0.1, linear interpolation, BORDER_REFLECT_101).
SEED_SHIFT = 0.1
SEED_SCALE = 0.1
SEED_ROTATE = 15
SEED_AFFINE_P = 0.3
SEED_BORDER_MODE = cv2.BORDER_REFLECT_101
SEED_INTERPOLATION = cv2.INTER_LINEAR

# Ours: the seed's shift, rotation and p, without its scale, with black borders, plus brightness and noise.
OURS_SHIFT = SEED_SHIFT
OURS_ROTATE = SEED_ROTATE
OURS_AFFINE_P = SEED_AFFINE_P
OURS_BORDER_MODE = cv2.BORDER_CONSTANT  # black, as DeviceAugment's fill_mode="constant"
OURS_BRIGHTNESS = 0.2  # on 0..1 pixels
OURS_BRIGHTNESS_P = 0.3
OURS_NOISE_STD = 0.04  # on 0..1 pixels
OURS_NOISE_P = 0.2


def train_transforms(size: int, preset: str = "ours"):
    """The train augmentation of a preset, for albumentations 2.x on the CPU.

    Args:
        size: output crop size; call ``augment_image`` so a smaller image is scaled up first.
        preset: ``"ours"`` (crop, flip, affine, brightness, noise) or ``"seed"`` (flip, affine, crop);
            see the module docstring.

    Returns:
        An ``albumentations.Compose``.

    Raises:
        ValueError: an unknown preset, naming the known ones.
    """
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augment preset {preset!r}; known: {list(AUGMENT_PRESETS)}")
    import albumentations as A  # only the train kernel, and only in this mode, needs it

    if preset == "seed":
        return A.Compose([A.HorizontalFlip(p=0.5), _seed_shift_scale_rotate(A), A.RandomCrop(height=size, width=size)])
    return A.Compose(
        [
            A.RandomCrop(height=size, width=size),
            A.HorizontalFlip(p=0.5),
            A.Affine(
                translate_percent=(-OURS_SHIFT, OURS_SHIFT),
                rotate=(-OURS_ROTATE, OURS_ROTATE),
                border_mode=OURS_BORDER_MODE,
                p=OURS_AFFINE_P,
            ),
            A.RandomBrightnessContrast(brightness_limit=OURS_BRIGHTNESS, contrast_limit=0.0, p=OURS_BRIGHTNESS_P),
            A.GaussNoise(std_range=(OURS_NOISE_STD / 2, OURS_NOISE_STD * 1.5), p=OURS_NOISE_P),
        ]
    )


def _seed_shift_scale_rotate(A):
    """The seed's ``ShiftScaleRotate(shift_limit=0.1, rotate_limit=15, p=0.3)`` of albumentations 0.x, as 2.x's Affine.

    2.x still has ShiftScaleRotate, deprecated, as an Affine with ``keep_ratio=False``: it draws the x and y
    scales independently and so stretches the image, which 0.x never did. 0.x drew one angle in ±15°, one
    scale in 0.9–1.1 and dx, dy in ±0.1 of the width and height, and warped with
    ``cv2.getRotationMatrix2D(centre, angle, scale)`` plus that shift. This Affine draws the same, with the same
    matrix and the same sign of rotation; it differs by under a pixel: it rotates about ((w-1)/2, (h-1)/2)
    rather than (w/2, h/2) and rounds the shift to whole pixels (tests/test_augment.py checks this).
    """
    return A.Affine(
        scale=(1 - SEED_SCALE, 1 + SEED_SCALE),
        keep_ratio=True,
        balanced_scale=False,
        translate_percent=(-SEED_SHIFT, SEED_SHIFT),
        rotate=(-SEED_ROTATE, SEED_ROTATE),
        shear=0,
        interpolation=SEED_INTERPOLATION,
        border_mode=SEED_BORDER_MODE,
        p=SEED_AFFINE_P,
    )


def augment_image(transform, img: np.ndarray, size: int) -> np.ndarray:
    """Runs an albumentations transform on an image scaled up first if its short side is below ``size``."""
    return transform(image=scale_up_to(img, size))["image"]


@keras.saving.register_keras_serializable(package="imet_utils")
class DeviceAugment(layers.Layer):
    """Our affine, brightness and noise (preset ``"ours"``), batched on the accelerator; identity at inference.

    Runs after the pipeline's crop and flip. Each image gets each transform with its own probability, as
    albumentations' ``p``; the affine is a rotation then a translation, with black fill (no scale).
    Input: images on a 0..1 scale.
    """

    def __init__(
        self,
        rotate=OURS_ROTATE,
        shift=OURS_SHIFT,
        p_affine=OURS_AFFINE_P,
        brightness=OURS_BRIGHTNESS,
        p_brightness=OURS_BRIGHTNESS_P,
        noise=OURS_NOISE_STD,
        p_noise=OURS_NOISE_P,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotate, self.shift, self.p_affine = rotate, shift, p_affine
        self.brightness, self.p_brightness, self.noise, self.p_noise = brightness, p_brightness, noise, p_noise
        self.seed = seed
        self._rotation = layers.RandomRotation(rotate / 360.0, fill_mode="constant", seed=seed)
        self._translation = layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
        self._seeds = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self._rotation.build(input_shape)
        self._translation.build(input_shape)
        super().build(input_shape)

    def _mask(self, batch, p, dtype):
        return ops.cast(keras.random.uniform((batch, 1, 1, 1), seed=self._seeds) < p, dtype)

    def call(self, x, training=None):
        if not training:
            return x
        batch = ops.shape(x)[0]
        m = self._mask(batch, self.p_affine, x.dtype)
        moved = self._translation(self._rotation(x, training=True), training=True)
        x = m * ops.cast(moved, x.dtype) + (1 - m) * x
        m = self._mask(batch, self.p_brightness, x.dtype)
        delta = ops.cast(
            keras.random.uniform((batch, 1, 1, 1), -self.brightness, self.brightness, seed=self._seeds), x.dtype
        )
        x = x + m * delta
        m = self._mask(batch, self.p_noise, x.dtype)
        x = x + m * ops.cast(keras.random.normal(ops.shape(x), stddev=self.noise, seed=self._seeds), x.dtype)
        return ops.clip(x, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotate": self.rotate,
            "shift": self.shift,
            "p_affine": self.p_affine,
            "brightness": self.brightness,
            "p_brightness": self.p_brightness,
            "noise": self.noise,
            "p_noise": self.p_noise,
            "seed": self.seed,
        }
