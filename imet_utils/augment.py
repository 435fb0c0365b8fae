"""Train-time augmentation.

Two ways, chosen by ``TrainConfig.augment``:
- ``"device"`` (default): the input pipeline only crops and flips (cheap, and a
  JPEG is decoded only inside its crop window); the seed's affine, brightness and
  noise run batched on the accelerator, in ``DeviceAugment``, the model's first
  layer after rescaling. It is the identity at inference, so exported models are
  unaffected.
- ``"albumentations"``: the seed's pipeline ported to albumentations 2, per image on
  the CPU. Its RandomBrightness and IAAAdditiveGaussianNoise are gone in 2.x:
  RandomBrightnessContrast(contrast_limit=0) and GaussNoise replace them, and
  Affine replaces the deprecated ShiftScaleRotate.

Both use the seed's parameters: shift 0.1, rotate 15 and p 0.3 for the affine part.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

SEED_SHIFT = 0.1
SEED_ROTATE = 15
SEED_AFFINE_P = 0.3
SEED_BRIGHTNESS = 0.2
SEED_BRIGHTNESS_P = 0.3
NOISE_STD = 0.04  # on 0..1 pixels
NOISE_P = 0.2


def train_transforms(size: int):
    """The seed's augmentation for albumentations 2.x: crop, flip, affine, brightness, noise.

    Args:
        size: output crop size; call ``augment_image`` so a smaller image is scaled up first.

    Returns:
        An ``albumentations.Compose``.
    """
    import albumentations as A  # only the train kernel, and only in this mode, needs it

    return A.Compose([
        A.RandomCrop(height=size, width=size),
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-SEED_SHIFT, SEED_SHIFT), rotate=(-SEED_ROTATE, SEED_ROTATE),
                 border_mode=0, p=SEED_AFFINE_P),
        A.RandomBrightnessContrast(brightness_limit=SEED_BRIGHTNESS, contrast_limit=0.0, p=SEED_BRIGHTNESS_P),
        A.GaussNoise(std_range=(NOISE_STD / 2, NOISE_STD * 1.5), p=NOISE_P),
    ])


def scale_up_to(img: np.ndarray, size: int) -> np.ndarray:
    """Scales an image whose short side is below ``size`` up to it, so a crop never fails."""
    import cv2

    h, w = img.shape[:2]
    if min(h, w) >= size:
        return img
    s = size / min(h, w)
    return cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_LINEAR)


def augment_image(transform, img: np.ndarray, size: int) -> np.ndarray:
    return transform(image=scale_up_to(img, size))["image"]


@keras.saving.register_keras_serializable(package="imet_utils")
class DeviceAugment(layers.Layer):
    """The seed's affine, brightness and noise, batched on the accelerator; identity at inference.

    Each image gets each transform with its own probability, as albumentations' ``p``.
    Input: images on a 0..1 scale.
    """

    def __init__(self, rotate=SEED_ROTATE, shift=SEED_SHIFT, p_affine=SEED_AFFINE_P, brightness=SEED_BRIGHTNESS,
                 p_brightness=SEED_BRIGHTNESS_P, noise=NOISE_STD, p_noise=NOISE_P, seed=None, **kwargs):
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
        delta = ops.cast(keras.random.uniform((batch, 1, 1, 1), -self.brightness, self.brightness,
                                              seed=self._seeds), x.dtype)
        x = x + m * delta
        m = self._mask(batch, self.p_noise, x.dtype)
        x = x + m * ops.cast(keras.random.normal(ops.shape(x), stddev=self.noise, seed=self._seeds), x.dtype)
        return ops.clip(x, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotate": self.rotate, "shift": self.shift, "p_affine": self.p_affine,
                "brightness": self.brightness, "p_brightness": self.p_brightness, "noise": self.noise,
                "p_noise": self.p_noise, "seed": self.seed}
